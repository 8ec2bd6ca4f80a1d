//! The tokeniser and chat template of a GGUF model (SmolLM2 and other `gpt2`-BPE models).
//!
//! Owns two things:
//! - [`tokenizer_from_gguf`] (feature `hf-tokenizer`): a byte-level BPE [`Tokenizer`] built with
//!   the `tokenizers` crate from the file's `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`,
//!   with the pre-tokeniser `tokenizer.ggml.pre` names, and every CONTROL / USER_DEFINED token
//!   (`tokenizer.ggml.token_type` 3 / 4, e.g. `<|im_start|>`) as a special token matched whole.
//! - [`chat_prompt`] and [`hh_messages`]: SmolLM2's ChatML template, and an HH-RLHF transcript
//!   (`"\n\nHuman: ...\n\nAssistant: ..."`) as user / assistant messages.
//!
//! The `smollm` pre-tokeniser (as in SmolLM2's `tokenizer.json` and llama.cpp's
//! `LLAMA_VOCAB_PRE_TYPE_SMOLLM`) first splits every digit on its own, then applies the GPT-2
//! byte-level split
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` and maps bytes
//! to GPT-2's printable alphabet (space is `Ġ`), the alphabet the vocabulary is written in.
//!
//! It does not truncate or batch (that is [`crate::data::real`]).

#[cfg(feature = "hf-tokenizer")]
use crate::data::tokenize::Tokenizer;
#[cfg(feature = "hf-tokenizer")]
use crate::gguf::GgufFile;
#[cfg(feature = "hf-tokenizer")]
use crate::{Error, Result};

/// `tokenizer.ggml.token_type` of a control token (`<|im_start|>`, `<|endoftext|>`).
pub const TOKEN_TYPE_CONTROL: u64 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token (matched whole, like a control token).
pub const TOKEN_TYPE_USER_DEFINED: u64 = 4;

/// SmolLM2's default system message, inserted by its chat template when the conversation does
/// not start with one.
pub const SMOLLM2_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The system prompt.
    System,
    /// The human (`Human:` in HH-RLHF).
    User,
    /// The model (`Assistant:` in HH-RLHF).
    Assistant,
}

impl Role {
    /// The role name the template writes after `<|im_start|>`.
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// SmolLM2's chat template (the file's `tokenizer.chat_template`, a ChatML variant):
///
/// ```text
/// [if messages[0] is not system: "<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n"]
/// for each message: "<|im_start|>{role}\n{content}<|im_end|>\n"
/// [if add_generation_prompt: "<|im_start|>assistant\n"]
/// ```
pub fn chat_prompt(messages: &[(Role, String)], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    if matches!(messages.first(), Some((r, _)) if *r != Role::System) {
        out.push_str(&format!("<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n"));
    }
    for (role, content) in messages {
        out.push_str(&format!(
            "<|im_start|>{}\n{content}<|im_end|>\n",
            role.name()
        ));
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

/// An HH-RLHF transcript as messages: each `"\n\nHuman:"` starts a user turn and each
/// `"\n\nAssistant:"` an assistant turn; contents are trimmed of surrounding whitespace. Text
/// before the first marker (normally none) becomes a user turn. Returns the messages and
/// whether the transcript ends with an empty assistant turn (an HH prompt, which ends in
/// `"\n\nAssistant:"`: render it with `add_generation_prompt = true`).
///
/// ```text
/// "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant:"
///   -> [(User, "Hi"), (Assistant, "Hello!"), (User, "Bye")], open = true
/// ```
pub fn hh_messages(transcript: &str) -> (Vec<(Role, String)>, bool) {
    const MARKERS: [(&str, Role); 2] = [
        ("\n\nHuman:", Role::User),
        ("\n\nAssistant:", Role::Assistant),
    ];
    let mut turns: Vec<(Role, String)> = Vec::new();
    let mut rest = transcript;
    let mut current: Option<Role> = None;
    loop {
        let next = MARKERS
            .iter()
            .filter_map(|(m, r)| rest.find(m).map(|i| (i, m.len(), *r)))
            .min_by_key(|&(i, _, _)| i);
        let (end, skip, role) = match next {
            Some(n) => (n.0, n.1, Some(n.2)),
            None => (rest.len(), 0, None),
        };
        let text = rest[..end].trim();
        match current {
            Some(r) => turns.push((r, text.to_string())),
            None if !text.is_empty() => turns.push((Role::User, text.to_string())),
            None => {}
        }
        match role {
            Some(r) => {
                current = Some(r);
                rest = &rest[end + skip..];
            }
            None => break,
        }
    }
    let open = matches!(turns.last(), Some((Role::Assistant, t)) if t.is_empty());
    if open {
        turns.pop();
    }
    (turns, open)
}

/// Build the byte-level BPE tokeniser stored in a GGUF file (`tokenizer.ggml.model = "gpt2"`,
/// `tokenizer.ggml.pre` one of `smollm`, `gpt2`, `default`). Ids are the positions in
/// `tokenizer.ggml.tokens`. Errors name the file and the key that breaks the rule.
#[cfg(feature = "hf-tokenizer")]
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    use tokenizers::models::bpe::{BPE, Vocab};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::{AddedToken, PreTokenizerWrapper};

    let path = file.path();
    let bad = |rule: String| Error::msg(format!("{}: GGUF tokenizer: {rule}", path.display()));
    let model = file.meta_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(bad(format!(
            "tokenizer.ggml.model is '{model}'; only 'gpt2' (byte-level BPE) is supported"
        )));
    }
    let pre = file.meta_str("tokenizer.ggml.pre").unwrap_or("default");
    let split_digits = match pre {
        "smollm" => true,
        "gpt2" | "default" => false,
        other => {
            return Err(bad(format!(
                "tokenizer.ggml.pre '{other}' is not supported (known: smollm, gpt2, default)"
            )));
        }
    };
    let tokens = file.meta_array("tokenizer.ggml.tokens")?;
    let mut vocab = Vocab::default();
    for (id, t) in tokens.iter().enumerate() {
        let s = t
            .as_str()
            .ok_or_else(|| bad(format!("tokenizer.ggml.tokens[{id}] is not a string")))?;
        if vocab.insert(s.to_string(), id as u32).is_some() {
            return Err(bad(format!(
                "tokenizer.ggml.tokens[{id}] '{s}' appears twice"
            )));
        }
    }
    let merges = file
        .meta_array("tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.as_str()
                .and_then(|s| s.split_once(' '))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    bad(format!(
                        "tokenizer.ggml.merges[{i}] must be a string 'left right', got {m:?}"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let types: Vec<u64> = match file.metadata.get("tokenizer.ggml.token_type") {
        None => vec![],
        Some(_) => file
            .meta_array("tokenizer.ggml.token_type")?
            .iter()
            .map(|v| v.as_u64().unwrap_or(0))
            .collect(),
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| {
            bad(format!(
                "the vocabulary and merges do not make a BPE model: {e}"
            ))
        })?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre_tokenizer: PreTokenizerWrapper = if split_digits {
        Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
    } else {
        byte_level.into()
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|&(_, &ty)| ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED)
        .filter_map(|(t, _)| t.as_str())
        .map(|s| AddedToken::from(s.to_string(), true))
        .collect();
    tokenizer.add_special_tokens(&special);
    Ok(Tokenizer::HuggingFace {
        tokenizer: Box::new(tokenizer),
        vocab: tokens.len(),
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Oracle: the transcript split by hand at its markers.
    #[test]
    fn hh_transcript_as_messages() {
        let (m, open) =
            hh_messages("\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant:");
        assert!(open);
        assert_eq!(
            m,
            vec![
                (Role::User, "Hi there".to_string()),
                (Role::Assistant, "Hello!".to_string()),
                (Role::User, "Bye".to_string()),
            ]
        );
        let (m, open) = hh_messages("\n\nHuman: Q\n\nAssistant: A");
        assert!(!open);
        assert_eq!(m.len(), 2);
    }

    /// Oracle: SmolLM2's `tokenizer.chat_template` (in the GGUF) expanded by hand for a user
    /// turn with the generation prompt.
    #[test]
    fn chat_template_by_hand() {
        let s = chat_prompt(&[(Role::User, "Hi".to_string())], true);
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = chat_prompt(
            &[
                (Role::System, "S".to_string()),
                (Role::Assistant, "A".to_string()),
            ],
            false,
        );
        assert_eq!(
            s,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
        );
    }
}
