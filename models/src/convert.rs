//! Converting sentence-transformers BERT models (safetensors + tokenizer.json) to GGUF, so
//! llama.cpp can embed with them.
//!
//! The mapping follows llama.cpp's own converter for BERT: hyper-parameters under the `bert.`
//! prefix, the WordPiece vocabulary rewritten to llama.cpp's convention (`##x` becomes `x`, a
//! word-initial `x` becomes `▁x`, special tokens stay as they are and are typed CONTROL), tensor
//! names mapped to llama.cpp's (`encoder.layer.N.attention.self.query` to `blk.N.attn_q`, ...).
//! The file is written with llama.cpp's own GGUF writer (through `llama-cpp-sys-2`), so the format
//! is whatever the bundled llama.cpp reads.

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_void};
use std::path::Path;
use std::ptr::NonNull;

use catena_core::{Error, Result};
use serde_json::Value;

/// The data type of the large weight matrices in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightType {
    /// Keep 32-bit floats (the default: exact).
    #[default]
    F32,
    /// Store matrices as 16-bit floats (half the size; norms and biases stay f32).
    F16,
}

/// Options of [`convert_bert`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Type of the 2-D weights.
    pub weight_type: WeightType,
    /// A name for `general.name` (defaults to the folder name).
    pub name: Option<String>,
}

fn bad(dir: &Path, message: impl std::fmt::Display) -> Error {
    Error::model_permanent(format!("cannot convert {}: {message}", dir.display()))
}

fn read_json(dir: &Path, file: &str) -> Result<Option<Value>> {
    let path = dir.join(file);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| bad(dir, format!("{file} is not valid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn get_u32(config: &Value, key: &str, dir: &Path) -> Result<u32> {
    config
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| bad(dir, format!("config.json lacks a valid `{key}`")))
}

/// Converts the sentence-transformers BERT model in `dir` (config.json, model.safetensors,
/// tokenizer.json, and optionally 1_Pooling/config.json, tokenizer_config.json,
/// sentence_bert_config.json) to a GGUF file at `out`.
pub fn convert_bert(dir: &Path, out: &Path, options: &ConvertOptions) -> Result<()> {
    let config = read_json(dir, "config.json")?.ok_or_else(|| bad(dir, "config.json is missing"))?;
    let is_bert = config.get("model_type").and_then(Value::as_str) == Some("bert")
        || config
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.starts_with("Bert"))));
    if !is_bert {
        return Err(bad(dir, "only BERT-family models (model_type \"bert\") can be converted"));
    }
    let hidden = get_u32(&config, "hidden_size", dir)?;
    let layers = get_u32(&config, "num_hidden_layers", dir)?;
    let heads = get_u32(&config, "num_attention_heads", dir)?;
    let ffn = get_u32(&config, "intermediate_size", dir)?;
    let ctx_len = get_u32(&config, "max_position_embeddings", dir)?;
    let type_vocab = get_u32(&config, "type_vocab_size", dir).unwrap_or(2);
    #[allow(clippy::cast_possible_truncation)]
    let eps = config.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12) as f32;

    // Pooling: sentence-transformers' pooling config; mean unless it says CLS.
    let pooling = read_json(dir, "1_Pooling/config.json")?;
    let pooling_type: u32 = match pooling {
        Some(p) if p.get("pooling_mode_cls_token").and_then(Value::as_bool) == Some(true) => 2,
        Some(p) if p.get("pooling_mode_lasttoken").and_then(Value::as_bool) == Some(true) => 3,
        _ => 1,
    };
    let max_seq_length = read_json(dir, "sentence_bert_config.json")?
        .and_then(|c| c.get("max_seq_length").and_then(Value::as_u64))
        .and_then(|v| u32::try_from(v).ok());

    let vocab = Vocab::read(dir)?;

    let st_path = dir.join("model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| Error::io(&st_path, e))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(dir, format!("model.safetensors is not valid: {e}")))?;

    let mut w = GgufWriter::new()?;
    let name = options.name.clone().unwrap_or_else(|| {
        dir.file_name().map_or_else(|| "bert".to_owned(), |n| n.to_string_lossy().into_owned())
    });
    w.set_str("general.architecture", "bert")?;
    w.set_str("general.name", &name)?;
    w.set_u32("general.file_type", if options.weight_type == WeightType::F16 { 1 } else { 0 })?;
    w.set_u32("bert.context_length", ctx_len)?;
    w.set_u32("bert.embedding_length", hidden)?;
    w.set_u32("bert.feed_forward_length", ffn)?;
    w.set_u32("bert.block_count", layers)?;
    w.set_u32("bert.attention.head_count", heads)?;
    w.set_f32("bert.attention.layer_norm_epsilon", eps)?;
    w.set_bool("bert.attention.causal", false)?;
    w.set_u32("bert.pooling_type", pooling_type)?;
    w.set_u32("tokenizer.ggml.token_type_count", type_vocab)?;
    if let Some(n) = max_seq_length {
        // Not a llama.cpp key: catena's embedder truncates to it, as sentence-transformers does.
        w.set_u32("catena.max_seq_length", n)?;
    }
    vocab.write(&mut w)?;

    // Tensor data must outlive the write: converted buffers are kept here, originals borrowed.
    let mut owned: Vec<(String, Vec<u8>, u32, Vec<i64>)> = Vec::new();
    let mut borrowed: Vec<(String, &[u8], u32, Vec<i64>)> = Vec::new();
    let mut names = tensors.names();
    names.sort();
    for st_name in names {
        let Some(gguf_name) = map_tensor_name(st_name) else { continue };
        let view = tensors.tensor(st_name).map_err(|e| bad(dir, format!("tensor {st_name}: {e}")))?;
        let ne: Vec<i64> = view.shape().iter().rev().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect();
        let is_matrix = view.shape().len() >= 2;
        let want_f16 = is_matrix && options.weight_type == WeightType::F16;
        use safetensors::Dtype;
        match (view.dtype(), want_f16) {
            (Dtype::F32, false) => borrowed.push((gguf_name, view.data(), GGML_F32, ne)),
            (Dtype::F16, true) => borrowed.push((gguf_name, view.data(), GGML_F16, ne)),
            (Dtype::F32, true) => owned.push((gguf_name, f32_bytes_to_f16(view.data()), GGML_F16, ne)),
            (Dtype::F16, false) => owned.push((gguf_name, f16_bytes_to_f32(view.data()), GGML_F32, ne)),
            (Dtype::BF16, f16) => {
                let f32s = bf16_bytes_to_f32(view.data());
                if f16 {
                    owned.push((gguf_name, f32_bytes_to_f16(&f32s), GGML_F16, ne));
                } else {
                    owned.push((gguf_name, f32s, GGML_F32, ne));
                }
            }
            (other, _) => return Err(bad(dir, format!("tensor {st_name} has unsupported dtype {other:?}"))),
        }
    }
    if borrowed.len() + owned.len() < 5 {
        return Err(bad(dir, "model.safetensors holds no BERT weights under the expected names"));
    }
    let mut tensor_ctx = TensorContext::new(borrowed.len() + owned.len())?;
    for (name, data, ty, ne) in borrowed
        .iter()
        .map(|(n, d, t, ne)| (n, *d, *t, ne))
        .chain(owned.iter().map(|(n, d, t, ne)| (n, d.as_slice(), *t, ne)))
    {
        // SAFETY: `data` lives in `bytes` or `owned`, both alive until after `w.write` below.
        unsafe { w.add_tensor(&mut tensor_ctx, name, ty, ne, data)? };
    }
    w.write(out)
}

const GGML_F32: u32 = 0;
const GGML_F16: u32 = 1;

/// Maps a Hugging Face BERT tensor name to llama.cpp's; `None` for tensors llama.cpp does not use.
fn map_tensor_name(name: &str) -> Option<String> {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    let (stem, suffix) = name.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    let mapped = match stem {
        "embeddings.word_embeddings" => "token_embd".to_owned(),
        "embeddings.position_embeddings" => "position_embd".to_owned(),
        "embeddings.token_type_embeddings" => "token_types".to_owned(),
        "embeddings.LayerNorm" => "token_embd_norm".to_owned(),
        _ => {
            let rest = stem.strip_prefix("encoder.layer.")?;
            let (n, part) = rest.split_once('.')?;
            let n: u32 = n.parse().ok()?;
            let part = match part {
                "attention.self.query" => "attn_q",
                "attention.self.key" => "attn_k",
                "attention.self.value" => "attn_v",
                "attention.output.dense" => "attn_output",
                "attention.output.LayerNorm" => "attn_output_norm",
                "intermediate.dense" => "ffn_up",
                "output.dense" => "ffn_down",
                "output.LayerNorm" => "layer_output_norm",
                _ => return None,
            };
            format!("blk.{n}.{part}")
        }
    };
    Some(format!("{mapped}.{suffix}"))
}

fn f16_bytes_to_f32(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(2)
        .flat_map(|c| {
            f16_to_f32(u16::from_le_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)]))
                .to_le_bytes()
        })
        .collect()
}

fn bf16_bytes_to_f32(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(2)
        .flat_map(|c| {
            let bits = u32::from(u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])) << 16;
            f32::from_bits(bits).to_le_bytes()
        })
        .collect()
}

fn f32_bytes_to_f16(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(4)
        .flat_map(|c| {
            let mut b = [0u8; 4];
            b.copy_from_slice(c);
            f32_to_f16(f32::from_le_bytes(b)).to_le_bytes()
        })
        .collect()
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn f32_to_f16(f: f32) -> u16 {
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = (mant | 0x80_0000) >> (1 - e);
        let round = (m >> 12) & 1;
        return sign | ((m >> 13) + round) as u16;
    }
    let round = (mant >> 12) & 1;
    let half = (u32::try_from(e).unwrap_or(0) << 10) | (mant >> 13);
    sign | (half + round) as u16
}

/// The WordPiece vocabulary of tokenizer.json, rewritten for llama.cpp.
struct Vocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    special: Vec<(&'static str, u32)>,
    lowercase: bool,
}

impl Vocab {
    fn read(dir: &Path) -> Result<Self> {
        let tok = read_json(dir, "tokenizer.json")?.ok_or_else(|| bad(dir, "tokenizer.json is missing"))?;
        let model = tok.get("model").ok_or_else(|| bad(dir, "tokenizer.json has no `model`"))?;
        if model.get("type").and_then(Value::as_str) != Some("WordPiece") {
            return Err(bad(dir, "tokenizer.json is not a WordPiece tokenizer"));
        }
        let vocab = model.get("vocab").and_then(Value::as_object).ok_or_else(|| bad(dir, "no vocab"))?;
        let by_token: HashMap<&str, u32> = vocab
            .iter()
            .filter_map(|(t, id)| Some((t.as_str(), u32::try_from(id.as_u64()?).ok()?)))
            .collect();
        let size = by_token.values().max().map_or(0, |m| *m as usize + 1);
        let special: std::collections::HashSet<u32> = tok
            .get("added_tokens")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|t| t.get("special").and_then(Value::as_bool) == Some(true))
                    .filter_map(|t| u32::try_from(t.get("id")?.as_u64()?).ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut tokens: Vec<String> = (0..size).map(|i| format!("[PAD{i}]")).collect();
        let mut types = vec![1i32; size];
        for (&text, &id) in &by_token {
            let Some(slot) = tokens.get_mut(id as usize) else { continue };
            if special.contains(&id) {
                *slot = text.to_owned();
                if let Some(t) = types.get_mut(id as usize) {
                    *t = 3;
                }
            } else if let Some(piece) = text.strip_prefix("##") {
                *slot = piece.to_owned();
            } else {
                *slot = format!("\u{2581}{text}");
            }
        }
        let config = read_json(dir, "tokenizer_config.json")?.unwrap_or(Value::Null);
        let special_map = read_json(dir, "special_tokens_map.json")?.unwrap_or(Value::Null);
        let lookup = |key: &str, default: &str| -> Option<u32> {
            let name = |v: &Value| -> Option<String> {
                let t = v.get(key)?;
                t.as_str().map(str::to_owned).or_else(|| t.get("content")?.as_str().map(str::to_owned))
            };
            let text = name(&special_map).or_else(|| name(&config)).unwrap_or_else(|| default.to_owned());
            by_token.get(text.as_str()).copied()
        };
        let mut ids = Vec::new();
        for (gguf_key, key, default) in [
            ("tokenizer.ggml.unknown_token_id", "unk_token", "[UNK]"),
            ("tokenizer.ggml.seperator_token_id", "sep_token", "[SEP]"),
            ("tokenizer.ggml.padding_token_id", "pad_token", "[PAD]"),
            ("tokenizer.ggml.mask_token_id", "mask_token", "[MASK]"),
            ("tokenizer.ggml.cls_token_id", "cls_token", "[CLS]"),
            // llama.cpp prepends the BOS token for BERT: it is the CLS token.
            ("tokenizer.ggml.bos_token_id", "cls_token", "[CLS]"),
        ] {
            if let Some(id) = lookup(key, default) {
                ids.push((gguf_key, id));
            }
        }
        let lowercase = tok
            .get("normalizer")
            .and_then(|n| n.get("lowercase"))
            .and_then(Value::as_bool)
            .or_else(|| config.get("do_lower_case").and_then(Value::as_bool))
            .unwrap_or(true);
        Ok(Self { tokens, types, special: ids, lowercase })
    }

    fn write(&self, w: &mut GgufWriter) -> Result<()> {
        w.set_str("tokenizer.ggml.model", "bert")?;
        w.set_str("tokenizer.ggml.pre", "default")?;
        w.set_arr_str("tokenizer.ggml.tokens", &self.tokens)?;
        w.set_arr_i32("tokenizer.ggml.token_type", &self.types)?;
        for (key, id) in &self.special {
            w.set_u32(key, *id)?;
        }
        w.set_bool("tokenizer.ggml.add_bos_token", true)?;
        w.set_bool("tokenizer.ggml.add_eos_token", false)?;
        w.set_bool("tokenizer.ggml.add_sep_token", true)?;
        w.set_bool("tokenizer.ggml.normalizer.lowercase", self.lowercase)
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid_input(format!("GGUF key or value contains a NUL byte: {s:?}")))
}

/// Owns a `gguf_context` from llama.cpp's GGUF API.
struct GgufWriter {
    ctx: NonNull<llama_cpp_sys_2::gguf_context>,
}

impl Drop for GgufWriter {
    fn drop(&mut self) {
        // SAFETY: created by gguf_init_empty, freed once.
        unsafe { llama_cpp_sys_2::gguf_free(self.ctx.as_ptr()) };
    }
}

impl GgufWriter {
    fn new() -> Result<Self> {
        // SAFETY: plain constructor; null is checked.
        let ctx = unsafe { llama_cpp_sys_2::gguf_init_empty() };
        NonNull::new(ctx)
            .map(|ctx| Self { ctx })
            .ok_or_else(|| Error::model_permanent("gguf_init_empty failed"))
    }

    fn set_str(&mut self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (cstr(key)?, cstr(value)?);
        // SAFETY: valid context and NUL-terminated strings; gguf copies them.
        unsafe { llama_cpp_sys_2::gguf_set_val_str(self.ctx.as_ptr(), k.as_ptr(), v.as_ptr()) };
        Ok(())
    }

    fn set_u32(&mut self, key: &str, value: u32) -> Result<()> {
        let k = cstr(key)?;
        // SAFETY: as above.
        unsafe { llama_cpp_sys_2::gguf_set_val_u32(self.ctx.as_ptr(), k.as_ptr(), value) };
        Ok(())
    }

    fn set_f32(&mut self, key: &str, value: f32) -> Result<()> {
        let k = cstr(key)?;
        // SAFETY: as above.
        unsafe { llama_cpp_sys_2::gguf_set_val_f32(self.ctx.as_ptr(), k.as_ptr(), value) };
        Ok(())
    }

    fn set_bool(&mut self, key: &str, value: bool) -> Result<()> {
        let k = cstr(key)?;
        // SAFETY: as above.
        unsafe { llama_cpp_sys_2::gguf_set_val_bool(self.ctx.as_ptr(), k.as_ptr(), value) };
        Ok(())
    }

    fn set_arr_str(&mut self, key: &str, values: &[String]) -> Result<()> {
        let k = cstr(key)?;
        let owned: Vec<CString> = values.iter().map(|v| cstr(v)).collect::<Result<_>>()?;
        let mut ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: `ptrs` points into `owned`, alive for the call; gguf copies the strings.
        unsafe {
            llama_cpp_sys_2::gguf_set_arr_str(self.ctx.as_ptr(), k.as_ptr(), ptrs.as_mut_ptr(), ptrs.len())
        };
        Ok(())
    }

    fn set_arr_i32(&mut self, key: &str, values: &[i32]) -> Result<()> {
        let k = cstr(key)?;
        // SAFETY: `values` is alive for the call and gguf copies `n` elements of the given type.
        unsafe {
            llama_cpp_sys_2::gguf_set_arr_data(
                self.ctx.as_ptr(),
                k.as_ptr(),
                llama_cpp_sys_2::GGUF_TYPE_INT32,
                values.as_ptr().cast::<c_void>(),
                values.len(),
            );
        };
        Ok(())
    }

    /// Adds a tensor whose bytes are `data`.
    ///
    /// # Safety
    /// `data` must stay alive and unmoved until [`GgufWriter::write`] has returned.
    unsafe fn add_tensor(
        &mut self,
        tctx: &mut TensorContext,
        name: &str,
        ty: u32,
        ne: &[i64],
        data: &[u8],
    ) -> Result<()> {
        let elem = if ty == GGML_F16 { 2 } else { 4 };
        let count: i64 = ne.iter().product();
        if usize::try_from(count).ok().and_then(|c| c.checked_mul(elem)) != Some(data.len())
            || ne.is_empty()
            || ne.len() > 4
        {
            return Err(Error::model_permanent(format!(
                "tensor {name}: shape {ne:?} does not match {} bytes",
                data.len()
            )));
        }
        let cname = cstr(name)?;
        if name.len() >= 64 {
            return Err(Error::model_permanent(format!("tensor name {name} is too long for GGUF")));
        }
        // SAFETY: the ggml context has room for the tensor header (sized in TensorContext::new)
        // and `no_alloc`, so no data is allocated; `ne` has 1..=4 entries.
        unsafe {
            let n_dims = i32::try_from(ne.len()).unwrap_or(4);
            let t = llama_cpp_sys_2::ggml_new_tensor(tctx.ctx.as_ptr(), ty, n_dims, ne.as_ptr());
            if t.is_null() {
                return Err(Error::model_permanent(format!("cannot create tensor {name}")));
            }
            llama_cpp_sys_2::ggml_set_name(t, cname.as_ptr());
            if llama_cpp_sys_2::gguf_find_tensor(self.ctx.as_ptr(), cname.as_ptr()) >= 0 {
                return Err(Error::model_permanent(format!("duplicate tensor {name}")));
            }
            llama_cpp_sys_2::gguf_add_tensor(self.ctx.as_ptr(), t);
            llama_cpp_sys_2::gguf_set_tensor_data(
                self.ctx.as_ptr(),
                cname.as_ptr(),
                data.as_ptr().cast::<c_void>(),
            );
        }
        Ok(())
    }

    fn write(&self, path: &Path) -> Result<()> {
        let p = cstr(&path.to_string_lossy())?;
        // SAFETY: valid context; every tensor's data is alive (see add_tensor's contract).
        let ok = unsafe { llama_cpp_sys_2::gguf_write_to_file(self.ctx.as_ptr(), p.as_ptr(), false) };
        if ok {
            Ok(())
        } else {
            Err(Error::io(path, std::io::Error::other("llama.cpp could not write the GGUF file")))
        }
    }
}

/// A metadata-only ggml context that holds tensor headers for the GGUF writer.
struct TensorContext {
    ctx: NonNull<llama_cpp_sys_2::ggml_context>,
}

impl TensorContext {
    fn new(n_tensors: usize) -> Result<Self> {
        // SAFETY: ggml_tensor_overhead is a pure function.
        let overhead = unsafe { llama_cpp_sys_2::ggml_tensor_overhead() };
        let params = llama_cpp_sys_2::ggml_init_params {
            mem_size: (n_tensors + 8) * overhead,
            mem_buffer: std::ptr::null_mut(),
            no_alloc: true,
        };
        // SAFETY: valid params; null checked.
        let ctx = unsafe { llama_cpp_sys_2::ggml_init(params) };
        NonNull::new(ctx).map(|ctx| Self { ctx }).ok_or_else(|| Error::model_permanent("ggml_init failed"))
    }
}

impl Drop for TensorContext {
    fn drop(&mut self) {
        // SAFETY: created by ggml_init, freed once.
        unsafe { llama_cpp_sys_2::ggml_free(self.ctx.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tensor_names_map_like_llama_cpp() {
        assert_eq!(map_tensor_name("embeddings.word_embeddings.weight").unwrap(), "token_embd.weight");
        assert_eq!(
            map_tensor_name("bert.encoder.layer.3.attention.self.query.bias").unwrap(),
            "blk.3.attn_q.bias"
        );
        assert_eq!(
            map_tensor_name("encoder.layer.0.output.LayerNorm.weight").unwrap(),
            "blk.0.layer_output_norm.weight"
        );
        assert_eq!(
            map_tensor_name("encoder.layer.0.attention.output.LayerNorm.weight").unwrap(),
            "blk.0.attn_output_norm.weight"
        );
        assert!(map_tensor_name("embeddings.position_ids").is_none());
        assert!(map_tensor_name("pooler.dense.weight").is_none());
    }

    #[test]
    fn half_floats_round_trip() {
        for v in [0.0f32, 1.0, -2.5, 65504.0, 6.1e-5, 1e-7, 0.333_251_95] {
            let back = f16_to_f32(f32_to_f16(v));
            assert!((back - v).abs() <= v.abs() * 1e-3 + 1e-7, "{v} -> {back}");
        }
    }

    #[test]
    fn non_bert_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            convert_bert(dir.path(), &dir.path().join("o.gguf"), &ConvertOptions::default()).unwrap_err();
        assert!(err.to_string().contains("config.json is missing"), "{err}");
        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
        let err =
            convert_bert(dir.path(), &dir.path().join("o.gguf"), &ConvertOptions::default()).unwrap_err();
        assert!(err.to_string().contains("only BERT"), "{err}");
    }
}
