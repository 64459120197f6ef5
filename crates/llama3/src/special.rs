//! The 256 special tokens that follow the 128,000 byte-pair ranks.

use std::sync::OnceLock;

use llama_stack_types::StopReason;

/// Number of ordinary (byte-pair) tokens; the first special token has this id.
pub const BASE_VOCAB_SIZE: u32 = 128_000;
/// Number of special tokens, named and reserved together.
pub const SPECIAL_TOKEN_COUNT: u32 = 256;
/// Size of the full vocabulary the tokenizer knows.
pub const VOCAB_SIZE: u32 = BASE_VOCAB_SIZE + SPECIAL_TOKEN_COUNT;

pub const BEGIN_OF_TEXT: u32 = 128_000;
pub const END_OF_TEXT: u32 = 128_001;
pub const FINETUNE_RIGHT_PAD_ID: u32 = 128_004;
pub const STEP_ID: u32 = 128_005;
pub const START_HEADER_ID: u32 = 128_006;
pub const END_HEADER_ID: u32 = 128_007;
pub const EOM_ID: u32 = 128_008;
pub const EOT_ID: u32 = 128_009;
pub const PYTHON_TAG: u32 = 128_010;
/// The id in the tokenizer table. Llama 3.2 Vision feeds the model
/// [`VISION_IMAGE_INPUT_ID`] in its place.
pub const IMAGE: u32 = 128_011;
/// What the vision models expect where the prompt has [`IMAGE`].
pub const VISION_IMAGE_INPUT_ID: u32 = 128_256;

/// Generation stops on any of these.
pub const STOP_TOKENS: [u32; 3] = [END_OF_TEXT, EOM_ID, EOT_ID];

/// Specials with a name, in id order from [`BEGIN_OF_TEXT`]. Two reserved slots
/// sit between `end_of_text` and `finetune_right_pad_id`, so the reserved
/// numbering is not the id offset.
const NAMED: [&str; 12] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
];

/// All special token strings in id order: index `i` is id `BASE_VOCAB_SIZE + i`.
///
/// After the twelve named slots come `<|reserved_special_token_2|>` up to
/// `<|reserved_special_token_245|>`, the same numbering as Meta's tokenizer.
pub fn special_token_strings() -> &'static [String] {
    static STRINGS: OnceLock<Vec<String>> = OnceLock::new();
    STRINGS.get_or_init(|| {
        let mut all: Vec<String> = NAMED.iter().map(|s| s.to_string()).collect();
        let reserved = SPECIAL_TOKEN_COUNT as usize - NAMED.len();
        all.extend((0..reserved).map(|i| format!("<|reserved_special_token_{}|>", i + 2)));
        all
    })
}

/// The string of a special token id, or `None` for an ordinary token.
pub fn special_token_name(id: u32) -> Option<String> {
    let index = id.checked_sub(BASE_VOCAB_SIZE)? as usize;
    special_token_strings().get(index).cloned()
}

/// The id of a special token string such as `<|eot_id|>`.
pub fn special_token_id(name: &str) -> Option<u32> {
    special_token_strings()
        .iter()
        .position(|s| s == name)
        .map(|i| BASE_VOCAB_SIZE + i as u32)
}

pub fn is_special_token(id: u32) -> bool {
    (BASE_VOCAB_SIZE..VOCAB_SIZE).contains(&id)
}

pub fn is_stop_token(id: u32) -> bool {
    STOP_TOKENS.contains(&id)
}

/// Why generation ended when it sampled `id`, if `id` is a stop token.
/// `end_of_text` only comes from base models, which have no notion of
/// messages, so it counts as the end of the turn.
pub fn stop_reason_for_token(id: u32) -> Option<StopReason> {
    match id {
        EOM_ID => Some(StopReason::EndOfMessage),
        EOT_ID | END_OF_TEXT => Some(StopReason::EndOfTurn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ids_match_their_strings() {
        let cases = [
            (BEGIN_OF_TEXT, "<|begin_of_text|>"),
            (END_OF_TEXT, "<|end_of_text|>"),
            (128_002, "<|reserved_special_token_0|>"),
            (128_003, "<|reserved_special_token_1|>"),
            (FINETUNE_RIGHT_PAD_ID, "<|finetune_right_pad_id|>"),
            (STEP_ID, "<|step_id|>"),
            (START_HEADER_ID, "<|start_header_id|>"),
            (END_HEADER_ID, "<|end_header_id|>"),
            (EOM_ID, "<|eom_id|>"),
            (EOT_ID, "<|eot_id|>"),
            (PYTHON_TAG, "<|python_tag|>"),
            (IMAGE, "<|image|>"),
            (128_012, "<|reserved_special_token_2|>"),
            (128_255, "<|reserved_special_token_245|>"),
        ];
        for (id, name) in cases {
            assert_eq!(special_token_name(id).as_deref(), Some(name), "id {id}");
            assert_eq!(special_token_id(name), Some(id), "{name}");
        }
    }

    #[test]
    fn table_is_complete_and_unique() {
        let all = special_token_strings();
        assert_eq!(all.len(), 256);
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), 256);
        assert_eq!(special_token_name(127_999), None);
        assert_eq!(special_token_name(VOCAB_SIZE), None);
        assert!(is_special_token(128_255) && !is_special_token(128_256));
    }

    #[test]
    fn stop_tokens_map_to_stop_reasons() {
        assert_eq!(STOP_TOKENS, [128_001, 128_008, 128_009]);
        assert_eq!(stop_reason_for_token(EOT_ID), Some(StopReason::EndOfTurn));
        assert_eq!(
            stop_reason_for_token(EOM_ID),
            Some(StopReason::EndOfMessage)
        );
        assert_eq!(stop_reason_for_token(PYTHON_TAG), None);
        assert!(STOP_TOKENS.iter().all(|&t| is_stop_token(t)));
    }
}
