//! # catena-agents
//!
//! Conversation memory for chat chains and agents. (The ReAct and tool-calling agents build on
//! these; see the project's roadmap in the README.)
//!
//! ```
//! use catena_agents::WindowMemory;
//! use catena_core::{Memory, Message, RunContext};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let memory = WindowMemory::new(1); // keep the last exchange only
//! let ctx = RunContext::new();
//! memory.add(&[Message::user("Hi"), Message::assistant("Hello!")], &ctx).await.unwrap();
//! memory.add(&[Message::user("What's 2+2?"), Message::assistant("4")], &ctx).await.unwrap();
//! let kept = memory.messages().await.unwrap();
//! assert_eq!(kept.len(), 2);
//! assert_eq!(kept[0].content, "What's 2+2?");
//! # });
//! ```
//!
//! ## Contents
//! - [`BufferMemory`]: every message.
//! - [`WindowMemory`]: the last k exchanges (a user message and what followed it).

mod memory;

pub use memory::{BufferMemory, WindowMemory};
