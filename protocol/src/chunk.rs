//! A borrowed view of one streamed `chat.completion.chunk`, and in-place
//! edits of its text.
//!
//! The relay reads every chunk the upstream sends but changes few: parsing
//! into a [`Chunk`] borrows from the event's bytes (no tree of values, no
//! copies of strings without escapes), tells whether the chunk is a *plain
//! content chunk* (one choice whose delta carries only text, nothing else set)
//! and where that text sits in the bytes, so a chunk can be forwarded
//! unchanged, byte for byte, or with only its text replaced
//! ([`replace_content`]). Everything the view does not name (ids, model,
//! vLLM's extra fields) is kept as the upstream wrote it.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Token counts of a usage chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// One chunk, borrowed from its event's data.
#[derive(Debug)]
pub struct Chunk<'a> {
    data: &'a [u8],
    pub choices: Vec<Choice<'a>>,
    /// A non-null `usage` object.
    pub usage: Option<Usage>,
    /// The event is an error report (`{"error": …}`), not a chunk.
    pub is_error: bool,
    /// Some top-level field other than the chunk's own ones is set (not null).
    extra_fields: bool,
}

/// One entry of `choices`.
#[derive(Debug, Default)]
pub struct Choice<'a> {
    pub index: u64,
    /// `delta.content` as written (a JSON string, quotes and escapes included).
    content: Option<&'a RawValue>,
    pub finish_reason: Option<Cow<'a, str>>,
    /// Something besides the text is set: a role, tool calls, reasoning,
    /// logprobs, token ids, a stop reason.
    pub has_other_fields: bool,
}

/// The event's data is not a JSON object of the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("not a chat completion chunk: {0}")]
pub struct ChunkError(#[from] serde_json::Error);

impl<'a> Chunk<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, ChunkError> {
        let mut de = serde_json::Deserializer::from_slice(data);
        let view = de.deserialize_map(ChunkVisitor)?;
        de.end()?;
        Ok(Chunk { data, ..view })
    }

    /// A chunk with exactly one choice whose delta carries only text and
    /// nothing else set: such chunks can be merged or have their text
    /// replaced without losing anything.
    pub fn plain_content(&self) -> Option<&Choice<'a>> {
        match &self.choices[..] {
            [c] if !self.is_error
                && self.usage.is_none()
                && !self.extra_fields
                && c.finish_reason.is_none()
                && !c.has_other_fields
                // Text that does not decode (a lone surrogate escape) must
                // not pass as plain: the filters would never see it.
                && c.content().is_some() =>
            {
                Some(c)
            }
            _ => None,
        }
    }

    /// Byte range of `choice`'s content string (quotes included) in the data.
    pub fn content_span(&self, choice: &Choice<'a>) -> Option<Range<usize>> {
        let raw = choice.content?.get().as_bytes();
        let start = (raw.as_ptr() as usize).checked_sub(self.data.as_ptr() as usize)?;
        let span = start..start + raw.len();
        // The raw value borrows from `data`; check rather than trust it.
        (self.data.get(span.clone()) == Some(raw)).then_some(span)
    }
}

impl<'a> Choice<'a> {
    /// The decoded text of `delta.content` (None when absent, null or not a string).
    pub fn content(&self) -> Option<Cow<'a, str>> {
        let raw: &'a str = self.content?.get();
        if let Ok(s) = serde_json::from_str::<&'a str>(raw) {
            return Some(Cow::Borrowed(s));
        }
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    }
}

/// `data` with the JSON string at `span` replaced by `text`, JSON-escaped
/// the way vLLM writes strings (raw UTF-8; quotes, backslashes and control
/// characters escaped).
pub fn replace_content(data: &[u8], span: Range<usize>, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + text.len() + 8);
    out.extend_from_slice(&data[..span.start]);
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, text);
    out.extend_from_slice(&data[span.end..]);
    out
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum TopField {
    Choices,
    Usage,
    Error,
    Id,
    Object,
    Created,
    Model,
    SystemFingerprint,
    #[serde(other)]
    Other,
}

struct ChunkVisitor;

impl<'de> Visitor<'de> for ChunkVisitor {
    type Value = Chunk<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a chat.completion.chunk object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut chunk = Chunk {
            data: &[],
            choices: Vec::new(),
            usage: None,
            is_error: false,
            extra_fields: false,
        };
        while let Some(key) = map.next_key::<TopField>()? {
            match key {
                TopField::Choices => {
                    chunk.choices = map
                        .next_value::<Option<Vec<Choice<'de>>>>()?
                        .unwrap_or_default()
                }
                TopField::Usage => chunk.usage = map.next_value()?,
                TopField::Error => {
                    chunk.is_error = map.next_value::<Option<IgnoredAny>>()?.is_some()
                }
                TopField::Id
                | TopField::Object
                | TopField::Created
                | TopField::Model
                | TopField::SystemFingerprint => {
                    map.next_value::<IgnoredAny>()?;
                }
                TopField::Other => {
                    chunk.extra_fields |= map.next_value::<Option<IgnoredAny>>()?.is_some();
                }
            }
        }
        Ok(chunk)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChoiceField {
    Index,
    Delta,
    FinishReason,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Choice<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choice<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a choice object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut c = Choice::default();
                while let Some(key) = map.next_key::<ChoiceField>()? {
                    match key {
                        ChoiceField::Index => c.index = map.next_value()?,
                        ChoiceField::Delta => {
                            if let Some(delta) = map.next_value::<Option<Delta<'de>>>()? {
                                c.content = delta.content;
                                c.has_other_fields |= delta.other;
                            }
                        }
                        ChoiceField::FinishReason => {
                            c.finish_reason = map.next_value::<Option<CowStr<'de>>>()?.map(|s| s.0)
                        }
                        ChoiceField::Other => {
                            c.has_other_fields |= map.next_value::<Option<IgnoredAny>>()?.is_some()
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

/// A string borrowed when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum DeltaField {
    Content,
    #[serde(other)]
    Other,
}

struct Delta<'a> {
    content: Option<&'a RawValue>,
    /// A field other than `content` is set (not null).
    other: bool,
}

impl<'de> Deserialize<'de> for Delta<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Delta<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a delta object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut delta = Delta {
                    content: None,
                    other: false,
                };
                while let Some(key) = map.next_key::<DeltaField>()? {
                    match key {
                        DeltaField::Content => delta.content = map.next_value()?,
                        DeltaField::Other => {
                            delta.other |= map.next_value::<Option<IgnoredAny>>()?.is_some()
                        }
                    }
                }
                Ok(delta)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1730000000,"model":"qwen","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null,"prompt_text":null}"#;
    const CONTENT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1730000000,"model":"qwen","choices":[{"index":0,"delta":{"content":"Hel\"lo \u4f60"},"logprobs":null,"finish_reason":null,"token_ids":null}]}"#;
    const FINAL: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1730000000,"model":"qwen","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}"#;
    const USAGE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1730000000,"model":"qwen","choices":[],"usage":{"prompt_tokens":12,"total_tokens":40,"completion_tokens":28}}"#;
    const ERROR: &str =
        r#"{"error": {"message": "boom", "type": "BadRequestError", "param": null, "code": 400}}"#;

    #[test]
    fn reads_vllm_chunks() {
        let c = Chunk::parse(CONTENT.as_bytes()).unwrap();
        let choice = c.plain_content().expect("a plain content chunk");
        assert_eq!(choice.content().as_deref(), Some("Hel\"lo 你"));

        let role = Chunk::parse(ROLE.as_bytes()).unwrap();
        assert!(role.plain_content().is_none(), "role is set");
        assert_eq!(role.choices[0].content().as_deref(), Some(""));

        let fin = Chunk::parse(FINAL.as_bytes()).unwrap();
        assert!(fin.plain_content().is_none());
        assert_eq!(fin.choices[0].finish_reason.as_deref(), Some("stop"));

        let usage = Chunk::parse(USAGE.as_bytes()).unwrap();
        assert!(usage.choices.is_empty());
        assert_eq!(
            usage.usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 28,
                total_tokens: 40
            })
        );
        assert!(Chunk::parse(ERROR.as_bytes()).unwrap().is_error);
    }

    #[test]
    fn anything_set_besides_text_makes_a_chunk_not_plain() {
        for json in [
            r#"{"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a","tool_calls":[]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"}}],"metrics":{"x":1}}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":7}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"\ud800 a@b.io"}}]}"#,
        ] {
            let c = Chunk::parse(json.as_bytes()).unwrap();
            assert!(c.plain_content().is_none(), "{json}");
        }
        let nulls = r#"{"choices":[{"index":0,"delta":{"content":"a","reasoning":null},"logprobs":null,"token_ids":null}],"usage":null,"prompt_token_ids":null}"#;
        assert!(
            Chunk::parse(nulls.as_bytes())
                .unwrap()
                .plain_content()
                .is_some()
        );
    }

    #[test]
    fn replacing_text_keeps_every_other_byte() {
        let c = Chunk::parse(CONTENT.as_bytes()).unwrap();
        let choice = c.plain_content().unwrap();
        let span = c.content_span(choice).unwrap();
        let out = replace_content(CONTENT.as_bytes(), span.clone(), "[EMAIL] \"q\"\n");
        let expected = CONTENT.replace(r#""Hel\"lo \u4f60""#, r#""[EMAIL] \"q\"\n""#);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        let again = Chunk::parse(&out).unwrap();
        assert_eq!(
            again.plain_content().unwrap().content().as_deref(),
            Some("[EMAIL] \"q\"\n")
        );
    }

    #[test]
    fn rejects_what_is_not_a_chunk() {
        for bad in [
            "",
            "[]",
            "\"x\"",
            "{",
            r#"{"choices":{}}"#,
            r#"{"choices":[{"index":-1}]}"#,
            "{} x",
        ] {
            assert!(Chunk::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
