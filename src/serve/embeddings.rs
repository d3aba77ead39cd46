//! `POST /v1/embeddings` and `GET /v1/models`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use base64::Engine as _;

use super::error::{ApiError, ApiResult, parse_body};
use super::{Server, unix_now};
use crate::core::RunContext;
use crate::models::wire::{
    EmbeddingData, EmbeddingVector, EmbeddingsReply, EmbeddingsRequest, EmbeddingsUsage, ModelCard, ModelList,
};

/// The most texts one request may embed (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

pub(super) async fn embeddings(
    State(server): State<Arc<Server>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<EmbeddingsReply>> {
    let body: EmbeddingsRequest = parse_body(body)?;
    let embedder = server
        .embed
        .get(&body.model)
        .cloned()
        .ok_or_else(|| ApiError::not_found_model(&body.model, server.embed.keys()))?;
    let texts = body.input.into_texts()?;
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid(format!("at most {MAX_INPUTS} inputs per request")).param("input"));
    }
    if let Some(d) = body.dimensions
        && d != embedder.dimensions()
    {
        return Err(ApiError::invalid(format!(
            "this model has {} dimensions; it cannot return {d}",
            embedder.dimensions()
        ))
        .param("dimensions"));
    }
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(ApiError::invalid("encoding_format must be float or base64").param("encoding_format"));
        }
    };
    // `user` is an end-user id for abuse monitoring; nothing to do with it here.
    let vectors = embedder.embed(&texts, &RunContext::new()).await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingVector::Float(v)
            };
            EmbeddingData { object: "embedding".into(), index, embedding }
        })
        .collect();
    // Whitespace-separated words: a rough token count, which OpenAI clients only display.
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    Ok(axum::Json(EmbeddingsReply {
        object: "list".into(),
        data,
        model: body.model,
        usage: EmbeddingsUsage { prompt_tokens: tokens, total_tokens: tokens },
    }))
}

pub(super) async fn models(State(server): State<Arc<Server>>) -> axum::Json<ModelList> {
    let created = unix_now();
    let data = server
        .chat
        .keys()
        .chain(server.embed.keys())
        .map(|id| ModelCard { id: id.clone(), object: "model".into(), created, owned_by: "catena".into() })
        .collect();
    axum::Json(ModelList { object: "list".into(), data })
}
