//! `[preprocess] tokenizer`: text in, token tensors out, and the text heads' answers back.
//!
//! A request's strings are tokenized on the executor thread (one `tokenizers` call per text, no
//! thread pool of its own) into unpadded [`Encoding`]s; padding happens when a run is built,
//! to the longest sequence of every request stacked into it, so dynamic batching pads across
//! requests and each request still gets exactly its own rows. The encodings travel with the
//! run's outputs to postprocessing, which needs them for the attention mask (mean pooling)
//! and the character offsets (token classification).

use std::path::Path;

use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::tensor::{Tensor, TensorData};
use serde_json::{Map, Value, json};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use crate::error::OnnxError;
use crate::manifest::{DEFAULT_MAX_LENGTH, TEXT_INPUTS, TensorManifest, TensorType};

/// One graph input a tokenizer fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextTensor {
    InputIds,
    AttentionMask,
    TokenTypeIds,
}

/// A model's tokenizer and the graph inputs it fills.
pub(crate) struct TextPreprocessor {
    tokenizer: Tokenizer,
    pad_id: u32,
    /// The graph's inputs in the manifest's order, each with its element type.
    inputs: Vec<(String, TextTensor, TensorType)>,
    max_length: usize,
}

impl std::fmt::Debug for TextPreprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextPreprocessor")
            .field("inputs", &self.inputs)
            .field("max_length", &self.max_length)
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

/// One example's text (or text pair) and its tokens.
#[derive(Debug, Clone)]
pub(crate) struct EncodedText {
    pub(crate) text: String,
    pub(crate) encoding: Encoding,
}

/// The examples of one text request.
#[derive(Debug)]
pub struct TextExamples {
    pub(crate) rows: Vec<EncodedText>,
    /// The request sent one text (or one pair), so it gets one result.
    pub(crate) single: bool,
}

impl TextPreprocessor {
    /// Reads `tokenizer.json`; truncation is set to `max_length` (default 512) and the file's
    /// own padding is turned off (runs pad to their longest sequence).
    pub(crate) fn load(
        path: &Path,
        max_length: Option<usize>,
        inputs: &[TensorManifest],
    ) -> Result<Self, OnnxError> {
        let model = |message: String| OnnxError::Model(format!("{}: {message}", path.display()));
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|err| model(format!("cannot read the tokenizer: {err}")))?;
        let max_length = max_length.unwrap_or(DEFAULT_MAX_LENGTH);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..TruncationParams::default()
            }))
            .map_err(|err| model(format!("cannot truncate to max_length {max_length}: {err}")))?;
        let pad_id = tokenizer
            .get_padding()
            .map(|padding| padding.pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .or_else(|| tokenizer.token_to_id("<pad>"))
            .unwrap_or(0);
        tokenizer.with_padding(None);
        let inputs = inputs
            .iter()
            .map(|input| {
                let role = match input.name.as_str() {
                    name if name == TEXT_INPUTS[0] => TextTensor::InputIds,
                    name if name == TEXT_INPUTS[1] => TextTensor::AttentionMask,
                    _ => TextTensor::TokenTypeIds,
                };
                let datatype = input.datatype.tensor().unwrap_or(TensorType::Int64);
                (input.name.clone(), role, datatype)
            })
            .collect();
        Ok(Self {
            tokenizer,
            pad_id,
            inputs,
            max_length,
        })
    }

    /// The request's texts, tokenized; `None` when `data` is not text (numbers: the client sent
    /// the graph's tensors itself).
    ///
    /// Forms: a string; `{"text": .., "text_pair": ..}` (a sentence pair); or a list of
    /// strings, pair objects and `[text, text_pair]` lists.
    pub(crate) fn read(&self, data: &Value) -> Option<Result<TextExamples, PipelineError>> {
        let invalid = |message: String| Some(Err(PipelineError::InvalidInput(message)));
        match data {
            Value::String(_) | Value::Object(_) => {
                let text = match text_of(data) {
                    Ok(text) => text?,
                    Err(message) => return invalid(message),
                };
                Some(self.encode(vec![text], true))
            }
            Value::Array(items) => {
                let first = items.first()?;
                // Lists of numbers are token ids, objects without `text` named tensors: the
                // client sent the graph's tensors itself.
                let text_first = match first {
                    Value::String(_) => true,
                    Value::Object(fields) => fields.contains_key("text"),
                    other => is_pair_list(other),
                };
                if !text_first {
                    return None;
                }
                let mut texts = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let text = if is_pair_list(item) {
                        pair_of(item)
                    } else {
                        text_of(item)
                            .and_then(|text| text.ok_or_else(|| "expected a string".to_owned()))
                    };
                    match text {
                        Ok(text) => texts.push(text),
                        Err(message) => return invalid(format!("text {index}: {message}")),
                    }
                }
                Some(self.encode(texts, false))
            }
            _ => None,
        }
    }

    /// The protocol form: a `BYTES` tensor of UTF-8 texts, `[n]` for n texts or `[n, 2]` for
    /// n pairs.
    pub(crate) fn read_tensor(&self, tensor: &Tensor) -> Result<TextExamples, PipelineError> {
        let invalid = PipelineError::InvalidInput;
        let TensorData::Bytes(elements) = &tensor.data else {
            return Err(invalid(format!(
                "input `{}` is {}; text goes in a BYTES tensor",
                tensor.name,
                tensor.datatype()
            )));
        };
        let strings = elements
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| {
                    invalid(format!(
                        "input `{}`: element {index} is not UTF-8 text",
                        tensor.name
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let texts = match tensor.shape.as_slice() {
            [_] => strings
                .into_iter()
                .map(|text| Text { text, pair: None })
                .collect(),
            [_, 2] => strings
                .chunks_exact(2)
                .map(|pair| Text {
                    text: pair[0].clone(),
                    pair: Some(pair[1].clone()),
                })
                .collect(),
            shape => {
                return Err(invalid(format!(
                    "input `{}` has shape {shape:?}; send [n] texts or [n, 2] text pairs",
                    tensor.name
                )));
            }
        };
        self.encode(texts, false)
    }

    fn encode(&self, texts: Vec<Text>, single: bool) -> Result<TextExamples, PipelineError> {
        if texts.is_empty() {
            return Err(PipelineError::InvalidInput(
                "no texts; send at least one".into(),
            ));
        }
        let rows = texts
            .into_iter()
            .enumerate()
            .map(|(index, Text { text, pair })| {
                let encoded = match &pair {
                    None => self.tokenizer.encode_char_offsets(text.as_str(), true),
                    Some(second) => self
                        .tokenizer
                        .encode_char_offsets((text.as_str(), second.as_str()), true),
                };
                let encoding = encoded.map_err(|err| {
                    let at = if single {
                        String::new()
                    } else {
                        format!("text {index}: ")
                    };
                    PipelineError::InvalidInput(format!("{at}cannot tokenize: {err}"))
                })?;
                Ok(EncodedText { text, encoding })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TextExamples { rows, single })
    }

    /// The graph's inputs for `group`'s examples, stacked in order and padded to the longest
    /// sequence among them (pad id, attention 0, type 0 after each example's own tokens).
    pub(crate) fn tensors(&self, group: &[&TextExamples]) -> Result<Vec<Tensor>, PipelineError> {
        let rows = group
            .iter()
            .map(|examples| examples.rows.len())
            .sum::<usize>();
        let longest = group
            .iter()
            .flat_map(|examples| &examples.rows)
            .map(|row| row.encoding.len())
            .max()
            .unwrap_or(0);
        self.inputs
            .iter()
            .map(|(name, role, datatype)| {
                let mut values = Vec::with_capacity(rows * longest);
                for row in group.iter().flat_map(|examples| &examples.rows) {
                    let encoding = &row.encoding;
                    let (own, pad): (&[u32], u32) = match role {
                        TextTensor::InputIds => (encoding.get_ids(), self.pad_id),
                        TextTensor::AttentionMask => (encoding.get_attention_mask(), 0),
                        TextTensor::TokenTypeIds => (encoding.get_type_ids(), 0),
                    };
                    values.extend_from_slice(own);
                    values.resize(values.len() + (longest - own.len()), pad);
                }
                let data = match datatype {
                    TensorType::Int32 => TensorData::Int32(
                        values
                            .into_iter()
                            .map(|value| i32::try_from(value).unwrap_or(i32::MAX))
                            .collect(),
                    ),
                    _ => TensorData::Int64(values.into_iter().map(i64::from).collect()),
                };
                Tensor::new(name.clone(), vec![rows, longest], data)
                    .map_err(|err| PipelineError::Inference(err.to_string()))
            })
            .collect()
    }
}

/// A text or a sentence pair as the client sent it.
struct Text {
    text: String,
    pair: Option<String>,
}

/// `"text"` or `{"text": .., "text_pair": ..}`; `Ok(None)` for an object that is not a text
/// (named tensors: the tensor path).
fn text_of(value: &Value) -> Result<Option<Text>, String> {
    match value {
        Value::String(text) => Ok(Some(Text {
            text: text.clone(),
            pair: None,
        })),
        Value::Object(fields) if fields.contains_key("text") => {
            if let Some(unknown) = fields
                .keys()
                .find(|key| !matches!(key.as_str(), "text" | "text_pair"))
            {
                return Err(format!(
                    "unknown field `{unknown}`; a text is {{\"text\": .., \"text_pair\": ..}}"
                ));
            }
            let string = |key: &str| match fields.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(format!("`{key}` must be a string")),
            };
            let text = string("text")?.ok_or_else(|| "`text` must be a string".to_owned())?;
            Ok(Some(Text {
                text,
                pair: string("text_pair")?,
            }))
        }
        Value::Object(_) => Ok(None),
        _ => Err("expected a string".into()),
    }
}

fn is_pair_list(value: &Value) -> bool {
    matches!(value, Value::Array(items) if items.len() == 2 && items.iter().all(Value::is_string))
}

fn pair_of(value: &Value) -> Result<Text, String> {
    match value.as_array().map(Vec::as_slice) {
        Some([Value::String(text), Value::String(pair)]) => Ok(Text {
            text: text.clone(),
            pair: Some(pair.clone()),
        }),
        _ => Err("a pair is [text, text_pair], two strings".into()),
    }
}

/// `{"label", "score", "scores": {label: p}}` for one example's scores (softmax first when
/// asked).
pub(crate) fn classification(scores: &[f64], labels: &[String], softmax: bool) -> Value {
    let probabilities = if softmax {
        softmax_of(scores)
    } else {
        scores.to_vec()
    };
    let best = crate::pipeline::argmax(&probabilities).unwrap_or(0);
    let mut all = Map::with_capacity(labels.len());
    for (label, probability) in labels.iter().zip(&probabilities) {
        all.insert(label.clone(), json!(probability));
    }
    json!({
        "label": labels.get(best).cloned().unwrap_or_default(),
        "score": probabilities.get(best).copied().unwrap_or(f64::NAN),
        "scores": all,
    })
}

fn softmax_of(scores: &[f64]) -> Vec<f64> {
    let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps = scores
        .iter()
        .map(|score| (score - top).exp())
        .collect::<Vec<_>>();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|value| value / sum).collect()
}

/// One example's embedding: `values` is its `[tokens, dim]` slice (or `[dim]` when the graph
/// pools itself); mean pooling counts the example's own tokens only (`tokens`, `None` = all).
pub(crate) fn embedding(
    values: &[f64],
    dims: &[usize],
    tokens: Option<usize>,
    cls: bool,
    normalize: bool,
) -> Value {
    let mut vector = match dims {
        [dim] => values[..(*dim).min(values.len())].to_vec(),
        [positions, dim] => {
            let dim = *dim;
            let counted = if cls {
                1
            } else {
                tokens.unwrap_or(*positions).clamp(1, (*positions).max(1))
            };
            let mut sum = vec![0.0; dim];
            for token in values.chunks_exact(dim).take(counted) {
                for (total, value) in sum.iter_mut().zip(token) {
                    *total += value;
                }
            }
            let count = counted as f64;
            sum.iter_mut().for_each(|value| *value /= count);
            sum
        }
        _ => values.to_vec(),
    };
    if normalize {
        let norm = vector.iter().map(|value| value * value).sum::<f64>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|value| *value /= norm);
        }
    }
    json!({ "embedding": vector })
}

/// Per-token labels and entities for one example: `values` is its `[positions, labels]` slice.
/// Entities group tokens as Hugging Face's `aggregation_strategy="simple"` does: `B-X` opens an
/// entity, `I-X` continues one of type `X`, and `O` tokens belong to none.
pub(crate) fn token_classification(values: &[f64], labels: &[String], row: &EncodedText) -> Value {
    let encoding = &row.encoding;
    let special = encoding.get_special_tokens_mask();
    let sequences = encoding.get_sequence_ids();
    let mut tokens = Vec::new();
    // (type, label index, start, end, summed score, tokens)
    let mut entities: Vec<Entity> = Vec::new();
    for (position, scores) in values.chunks_exact(labels.len()).enumerate() {
        if position >= encoding.len()
            || special.get(position) == Some(&1)
            || sequences.get(position).copied().flatten() != Some(0)
        {
            continue;
        }
        let probabilities = softmax_of(scores);
        let best = crate::pipeline::argmax(&probabilities).unwrap_or(0);
        let score = probabilities[best];
        let label = &labels[best];
        let (start, end) = encoding.get_offsets()[position];
        tokens.push(json!({
            "token": encoding.get_tokens()[position],
            "label": label,
            "score": score,
            "start": start,
            "end": end,
        }));
        let (begins, tag) = match label.split_once('-') {
            Some(("B", tag)) => (true, tag),
            Some(("I", tag)) => (false, tag),
            _ => (false, label.as_str()),
        };
        match entities.last_mut() {
            Some(open) if open.tag == tag && !begins => {
                open.end = end;
                open.score_sum += score;
                open.tokens += 1;
            }
            _ => entities.push(Entity {
                tag: tag.to_owned(),
                start,
                end,
                score_sum: score,
                tokens: 1,
            }),
        }
    }
    let entities = entities
        .into_iter()
        .filter(|entity| entity.tag != "O")
        .map(|entity| {
            json!({
                "entity": entity.tag,
                "score": entity.score_sum / entity.tokens as f64,
                "start": entity.start,
                "end": entity.end,
                "text": char_slice(&row.text, entity.start, entity.end),
            })
        })
        .collect::<Vec<_>>();
    json!({ "tokens": tokens, "entities": entities })
}

struct Entity {
    tag: String,
    start: usize,
    end: usize,
    score_sum: f64,
    tokens: usize,
}

/// `text[start..end]` in characters (the tokenizer's offsets count characters).
fn char_slice(text: &str, start: usize, end: usize) -> String {
    text.chars()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let probabilities = softmax_of(&[1.0, 3.0, 2.0]);
        assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(probabilities[1] > probabilities[2] && probabilities[2] > probabilities[0]);
        // Large logits do not overflow.
        assert!(softmax_of(&[1000.0, 0.0])[0] > 0.999);
    }

    #[test]
    fn mean_pooling_counts_only_the_example_tokens() {
        // Two real tokens, one padding position that must not count.
        let values = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        let pooled = embedding(&values, &[3, 2], Some(2), false, false);
        assert_eq!(pooled, json!({"embedding": [2.0, 3.0]}));
        let cls = embedding(&values, &[3, 2], Some(2), true, false);
        assert_eq!(cls, json!({"embedding": [1.0, 2.0]}));
        let unit = embedding(&[3.0, 4.0], &[2], None, false, true);
        assert_eq!(unit, json!({"embedding": [0.6, 0.8]}));
    }

    #[test]
    fn texts_come_as_strings_pairs_and_lists_and_numbers_are_not_text() {
        assert!(text_of(&json!("hi")).is_ok_and(|text| text.is_some()));
        let pair = text_of(&json!({"text": "a", "text_pair": "b"}));
        assert!(pair.is_ok_and(|text| text.is_some_and(|text| text.pair.as_deref() == Some("b"))));
        assert!(text_of(&json!({"input_ids": [1, 2]})).is_ok_and(|text| text.is_none()));
        assert!(text_of(&json!({"text": 3})).is_err());
        assert!(text_of(&json!({"text": "a", "lang": "en"})).is_err());
        assert!(is_pair_list(&json!(["a", "b"])));
        assert!(!is_pair_list(&json!([1, 2])));
    }

    #[test]
    fn character_slices_respect_multibyte_text() {
        assert_eq!(char_slice("Zürich is big", 0, 6), "Zürich");
        assert_eq!(char_slice("née à Paris", 6, 11), "Paris");
    }
}
