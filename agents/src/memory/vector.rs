//! [`VectorMemory`]: past exchanges recalled by relevance to the new input.

use std::sync::Arc;

use catena_core::{
    Document, Embedded, Embedder, Error, Filter, Memory, Message, Result, Role, RunContext, VectorStore,
    async_trait,
};
use tokio::sync::Mutex;

/// Stores each exchange (a user message and what followed) as a document in a vector store and,
/// before a turn, recalls the `k` exchanges whose text is closest to the new input, oldest first
/// (LangChain's `VectorStoreRetrieverMemory`). Suits long-running assistants where the relevant
/// past is far back; with a LanceDB store the memory outlives the process.
///
/// Documents carry `kind = "memory"` and `memory = <name>` metadata, so one store can hold several
/// memories and ordinary documents side by side. [`messages`](Memory::messages) has no input to be
/// relevant to and returns the exchanges of this process in order.
#[derive(Debug)]
pub struct VectorMemory {
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn VectorStore>,
    name: String,
    k: usize,
    pending: Mutex<Vec<Message>>,
    written: Mutex<Vec<(String, Vec<Message>)>>,
}

impl VectorMemory {
    /// A memory named `name` in `store`, recalling 4 exchanges per turn.
    #[must_use]
    pub fn new(embedder: Arc<dyn Embedder>, store: Arc<dyn VectorStore>, name: impl Into<String>) -> Self {
        Self {
            embedder,
            store,
            name: name.into(),
            k: 4,
            pending: Mutex::new(Vec::new()),
            written: Mutex::new(Vec::new()),
        }
    }

    /// How many exchanges to recall.
    #[must_use]
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k.max(1);
        self
    }

    fn filter(&self) -> Filter {
        Filter::eq("kind", "memory").and(Filter::eq("memory", self.name.clone()))
    }

    async fn store_exchange(&self, exchange: Vec<Message>, ctx: &RunContext) -> Result<()> {
        let text = exchange
            .iter()
            .filter(|m| !m.content.trim().is_empty())
            .map(|m| format!("{}: {}", if m.role == Role::User { "Human" } else { "AI" }, m.content.trim()))
            .collect::<Vec<_>>()
            .join("\n");
        if text.is_empty() {
            return Ok(());
        }
        let vector = self.embedder.embed_one(&text, ctx).await?;
        let serial =
            serde_json::to_value(&exchange).map_err(|e| Error::parse("memory exchange", e.to_string()))?;
        let seq = self.written.lock().await.len();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or_default();
        let id = format!("memory-{}-{stamp}-{seq}", self.name);
        let document = Document::new(text)
            .with_id(id.clone())
            .with_metadata("kind", "memory")
            .with_metadata("memory", self.name.clone())
            .with_metadata("order", stamp.to_string())
            .with_metadata("messages", serial.to_string());
        self.store.upsert(vec![Embedded { document, vector }]).await?;
        self.written.lock().await.push((id, exchange));
        Ok(())
    }
}

#[async_trait]
impl Memory for VectorMemory {
    async fn messages(&self) -> Result<Vec<Message>> {
        let written = self.written.lock().await;
        let mut out: Vec<Message> = written.iter().flat_map(|(_, m)| m.iter().cloned()).collect();
        out.extend(self.pending.lock().await.iter().cloned());
        Ok(out)
    }

    async fn messages_for(&self, input: &str, ctx: &RunContext) -> Result<Vec<Message>> {
        if input.trim().is_empty() || self.store.count().await? == 0 {
            return Ok(Vec::new());
        }
        let query = self.embedder.embed_one(input, ctx).await?;
        let mut hits = self.store.search(&query, self.k, Some(&self.filter())).await?;
        hits.sort_by(|a, b| {
            let order = |d: &Document| {
                d.metadata.get("order").and_then(|v| v.as_str()).unwrap_or_default().to_owned()
            };
            order(&a.document).cmp(&order(&b.document))
        });
        let mut out = Vec::new();
        for hit in hits {
            let raw = hit.document.metadata.get("messages").and_then(|v| v.as_str()).unwrap_or("[]");
            let messages: Vec<Message> = serde_json::from_str(raw).map_err(|e| {
                Error::parse("memory document", format!("{}: {e}", hit.document.id.unwrap_or_default()))
            })?;
            out.extend(messages);
        }
        Ok(out)
    }

    /// Buffers messages until an exchange is complete (the next user message starts a new one),
    /// then stores it. An `[user, assistant]` pair, what the executor adds per run, is stored at once.
    async fn add(&self, messages: &[Message], ctx: &RunContext) -> Result<()> {
        let mut ready = Vec::new();
        {
            let mut pending = self.pending.lock().await;
            for m in messages {
                if m.role == Role::User && !pending.is_empty() {
                    ready.push(std::mem::take(&mut *pending));
                }
                pending.push(m.clone());
            }
            if pending.last().is_some_and(|m| m.role == Role::Assistant && m.tool_calls.is_empty()) {
                ready.push(std::mem::take(&mut *pending));
            }
        }
        for exchange in ready {
            self.store_exchange(exchange, ctx).await?;
        }
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.pending.lock().await.clear();
        let mut ids: Vec<String> = self.written.lock().await.drain(..).map(|(id, _)| id).collect();
        // Exchanges stored by earlier processes too, where the store can list them.
        if let Ok(documents) = self.store.documents(Some(&self.filter())).await {
            ids.extend(documents.into_iter().filter_map(|d| d.id));
        }
        ids.sort();
        ids.dedup();
        self.store.delete(&ids).await?;
        Ok(())
    }

    /// `null`: the exchanges live in the vector store, which persists them itself.
    async fn snapshot(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    async fn restore(&self, snapshot: serde_json::Value) -> Result<()> {
        if snapshot.is_null() {
            Ok(())
        } else {
            Err(Error::parse(
                "memory snapshot",
                "a vector memory's snapshot is null; its exchanges live in its store",
            ))
        }
    }
}
