//! Chat templates: the GGUF's own Jinja template rendered with minijinja, falling back to
//! llama.cpp's built-in template matcher, then to ChatML.

use catena_core::{Message, ToolSpec};
use serde_json::{Value, json};

/// Which renderer produced a prompt (reported in logs so a surprising prompt can be explained).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemplateKind {
    /// The model's `tokenizer.chat_template`, rendered by minijinja.
    Jinja,
    /// llama.cpp's built-in matcher for well-known templates.
    Builtin,
    /// Plain ChatML, when the model has no usable template.
    ChatMl,
}

/// A compiled chat template plus what it needs to render.
pub(crate) struct ChatTemplate {
    env: Option<minijinja::Environment<'static>>,
    source: Option<String>,
    bos: String,
    eos: String,
}

const NAME: &str = "chat";

/// The work one rendering may do, in minijinja's fuel: about one unit per instruction and per 64
/// bytes of data the template creates, so it bounds both time and memory. Templates come from
/// model files, which anyone can publish: one that loops for ever, or doubles a string until the
/// machine runs out of memory, stops with an error after ~64 MB or a million instructions (well
/// under a second) and the prompt falls back to llama.cpp's built-in template. Real templates
/// spend a few dozen units per message, plus one per 64 bytes of prompt: a 128k-token
/// conversation needs a few tens of thousands.
pub(crate) const TEMPLATE_FUEL: u64 = 1_000_000;

impl ChatTemplate {
    /// Compiles `source` (the GGUF's `tokenizer.chat_template`), if any. A template minijinja
    /// cannot parse is logged and left to the fallbacks.
    pub(crate) fn new(source: Option<String>, bos: String, eos: String) -> Self {
        let env = source.as_ref().and_then(|src| {
            let mut env = minijinja::Environment::new();
            minijinja_contrib::add_to_environment(&mut env);
            env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
            env.set_fuel(Some(TEMPLATE_FUEL));
            env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
            });
            env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
            match env.add_template_owned(NAME, src.clone()) {
                Ok(()) => Some(env),
                Err(e) => {
                    tracing::warn!(error = %e, "the model's chat template does not compile; using fallbacks");
                    None
                }
            }
        });
        Self { env, source, bos, eos }
    }

    /// The BOS token's text (empty when the model has none).
    pub(crate) fn bos(&self) -> &str {
        &self.bos
    }

    /// Renders the conversation with the generation prompt open for the assistant.
    pub(crate) fn render(
        &self,
        model: &llama_cpp_2::model::LlamaModel,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> (String, TemplateKind) {
        if let Some(env) = &self.env {
            match self.render_jinja(env, messages, tools) {
                Ok(prompt) => return (prompt, TemplateKind::Jinja),
                Err(e) => {
                    tracing::warn!(error = %e, "chat template failed to render; trying llama.cpp's built-in")
                }
            }
        }
        if let Some(prompt) = self.render_builtin(model, messages) {
            return (prompt, TemplateKind::Builtin);
        }
        (chatml(messages), TemplateKind::ChatMl)
    }

    /// Renders the conversation and its tools with the model's own template only (no fallback
    /// knows the model's tool syntax): `None`, with a warning, when there is no template or it
    /// fails on these tools.
    pub(crate) fn render_native(&self, messages: &[Message], tools: &[ToolSpec]) -> Option<String> {
        match self.render_own(messages, tools)? {
            Ok(prompt) => Some(prompt),
            Err(e) => {
                tracing::warn!(error = %e, "the chat template failed to render tools; using the generic tool format");
                None
            }
        }
    }

    /// Renders with the model's own template, its error included: `None` when the model has no
    /// template or it does not compile.
    pub(crate) fn render_own(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Option<Result<String, minijinja::Error>> {
        let env = self.env.as_ref()?;
        Some(self.render_jinja(env, messages, tools))
    }

    /// The template's source, when the model has one.
    pub(crate) fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    fn render_jinja(
        &self,
        env: &minijinja::Environment<'static>,
        messages: &[Message],
        tools: &[ToolSpec],
    ) -> Result<String, minijinja::Error> {
        let messages: Vec<Value> = messages.iter().map(message_json).collect();
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        let ctx = minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(&messages)),
            tools => if tools.is_empty() { minijinja::Value::from(()) } else { minijinja::Value::from(minijinja::value::Serde(&tools)) },
            add_generation_prompt => true,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        };
        env.get_template(NAME)?.render(ctx)
    }

    fn render_builtin(&self, model: &llama_cpp_2::model::LlamaModel, messages: &[Message]) -> Option<String> {
        let template = match &self.source {
            Some(src) => llama_cpp_2::model::LlamaChatTemplate::new(src).ok()?,
            None => model.chat_template(None).ok()?,
        };
        let chat: Vec<llama_cpp_2::model::LlamaChatMessage> = messages
            .iter()
            .filter_map(|m| {
                llama_cpp_2::model::LlamaChatMessage::new(m.role.as_str().to_owned(), m.content.clone()).ok()
            })
            .collect();
        model.apply_chat_template(&template, &chat, true).ok()
    }
}

fn message_json(m: &Message) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("role".into(), json!(m.role.as_str()));
    v.insert("content".into(), json!(m.content));
    if !m.tool_calls.is_empty() {
        let calls = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        v.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &m.tool_call_id {
        v.insert("tool_call_id".into(), json!(id));
    }
    Value::Object(v)
}

/// ChatML, the format most small instruct models (SmolLM2 among them) are trained on.
pub(crate) fn chatml(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str("<|im_start|>");
        out.push_str(m.role.as_str());
        out.push('\n');
        out.push_str(&m.content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_shape() {
        let p = chatml(&[Message::system("s"), Message::user("u")]);
        assert_eq!(
            p,
            "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    fn jinja(source: &str, messages: &[Message]) -> Result<String, minijinja::Error> {
        let template = ChatTemplate::new(Some(source.into()), String::new(), String::new());
        let env = template.env.as_ref().expect("the template compiles");
        template.render_jinja(env, messages, &[])
    }

    #[test]
    fn a_template_that_loops_for_ever_or_floods_memory_runs_out_of_fuel() {
        let endless =
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}";
        let doubling = "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}";
        let repeated = "{{ 'x' * 10000000000 }}";
        for source in [endless, doubling, repeated] {
            let e = jinja(source, &[Message::user("hi")]).expect_err(source);
            assert_eq!(e.kind(), minijinja::ErrorKind::OutOfFuel, "{source}: {e}");
        }
    }

    #[test]
    fn a_long_conversation_renders_within_the_fuel() {
        // 2,000 messages of 1 KB: a 2 MB prompt, far past any context window this crate runs.
        let chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}\
                      {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let messages: Vec<Message> =
            (0..2000).map(|i| Message::user(format!("{i:04}{}", "x".repeat(1020)))).collect();
        let prompt = jinja(chatml, &messages).expect("rendered");
        assert_eq!(prompt.matches("<|im_start|>user").count(), 2000);
    }
}
