//! One request's constraint: the allowed-token set at each step and the parser state behind it.

use std::sync::Arc;

use llguidance::Matcher;
use llguidance::toktrie::SimpleVob;

use crate::{Error, Format, Vocabulary};

/// How a [`Format`] is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintOptions {
    /// The most whitespace characters (space, tab, newline, carriage return) allowed between
    /// two tokens of JSON output; none is allowed before or after the value. `0` gives
    /// compact JSON. The bound keeps a model from producing whitespace forever; the default,
    /// 12, leaves room for a newline and indentation a few levels deep. Grammars (Lark, GBNF)
    /// say for themselves where whitespace goes.
    pub json_whitespace: usize,
}

impl Default for ConstraintOptions {
    fn default() -> Self {
        Self {
            json_whitespace: 12,
        }
    }
}

/// A set of token ids: bit `t % 32` of word `t / 32` is set when token `t` is in the set.
#[derive(Debug, Clone)]
pub struct TokenSet(SimpleVob);

impl TokenSet {
    /// Whether `token` is in the set.
    pub fn contains(&self, token: u32) -> bool {
        (token as usize) < self.0.len() && self.0.is_allowed(token)
    }

    /// How many tokens are in the set.
    pub fn count(&self) -> usize {
        self.0.num_set()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_zero()
    }

    /// The token ids in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter()
    }

    /// The bitset words, for copying the set to an accelerator as a mask.
    pub fn as_words(&self) -> &[u32] {
        self.0.as_slice()
    }

    /// Sets the logit of every token outside the set to negative infinity, including ids past
    /// the vocabulary (models often pad their output layer).
    pub fn apply_to_logits(&self, logits: &mut [f32]) {
        let words = self.0.as_slice();
        for (chunk_index, chunk) in logits.chunks_mut(32).enumerate() {
            // Most words are all-allowed (inside strings) or all-refused (elsewhere).
            match words.get(chunk_index).copied().unwrap_or(0) {
                0 => chunk.fill(f32::NEG_INFINITY),
                u32::MAX => {}
                word => {
                    for (bit, logit) in chunk.iter_mut().enumerate() {
                        if word & (1 << bit) == 0 {
                            *logit = f32::NEG_INFINITY;
                        }
                    }
                }
            }
        }
    }
}

/// A request's constraint on its output, advanced one token at a time.
///
/// Each step: [`Constraint::allowed_tokens`] (or [`Constraint::apply_to_logits`]), sample one
/// of the allowed tokens, then [`Constraint::accept`] it. End the sequence when the sampled
/// token is an end-of-sequence token (accepting it is optional) or when
/// [`Constraint::is_finished`] says nothing but one could follow.
///
/// Whatever allowed tokens are chosen, the text so far is a prefix of a valid output, and an
/// end-of-sequence token is allowed exactly when it is a whole one. It may never become whole
/// if the format admits unbounded output (a string without `maxLength`); the engine's token
/// limit still applies.
pub struct Constraint {
    vocabulary: Arc<Vocabulary>,
    matcher: Matcher,
    /// The allowed set for the current step, once computed.
    allowed: Option<TokenSet>,
    /// An end-of-sequence token was accepted.
    ended: bool,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("ended", &self.ended)
            .field("stopped", &self.matcher.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Compiles `format` for `vocabulary` with the default options.
    ///
    /// Fails with [`Error::UnsupportedSchema`] or [`Error::InvalidFormat`] (both the
    /// request's fault) when the format cannot be enforced. Compiling takes from well under a
    /// millisecond for small schemas to some milliseconds for large ones.
    pub fn new(vocabulary: Arc<Vocabulary>, format: &Format) -> Result<Self, Error> {
        Self::with_options(vocabulary, format, &ConstraintOptions::default())
    }

    /// Compiles `format` for `vocabulary` with the given options.
    pub fn with_options(
        vocabulary: Arc<Vocabulary>,
        format: &Format,
        options: &ConstraintOptions,
    ) -> Result<Self, Error> {
        let grammar = format.to_grammar(options)?;
        let parser = vocabulary
            .factory()
            .create_parser(grammar)
            .map_err(|e| Error::InvalidFormat(format!("{e:#}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(Error::InvalidFormat(error));
        }
        Ok(Self {
            vocabulary,
            matcher,
            allowed: None,
            ended: false,
        })
    }

    /// The vocabulary this constraint was compiled for.
    pub fn vocabulary(&self) -> &Arc<Vocabulary> {
        &self.vocabulary
    }

    /// The tokens that may come next. Computed once per step (typically tens to hundreds of
    /// microseconds for 128k tokens), then cached until [`Constraint::accept`].
    ///
    /// Once [`Constraint::is_finished`], only the end-of-sequence tokens.
    pub fn allowed_tokens(&mut self) -> Result<&TokenSet, Error> {
        if self.allowed.is_none() {
            let mask = self
                .matcher
                .compute_mask_or_eos()
                .map_err(|e| Error::Internal(e.to_string()))?;
            self.allowed = Some(TokenSet(mask));
        }
        Ok(self.allowed.as_ref().expect("computed above"))
    }

    /// Masks `logits` (one per token id; extra trailing entries are masked too) so that only
    /// allowed tokens can be sampled.
    pub fn apply_to_logits(&mut self, logits: &mut [f32]) -> Result<(), Error> {
        self.allowed_tokens()?.apply_to_logits(logits);
        Ok(())
    }

    /// Advances past `token`. A token outside [`Constraint::allowed_tokens`] is refused with
    /// [`Error::TokenNotAllowed`] and leaves the constraint as it was. An end-of-sequence
    /// token, once allowed, ends the output.
    pub fn accept(&mut self, token: u32) -> Result<(), Error> {
        if !self.allowed_tokens()?.contains(token) {
            return Err(Error::TokenNotAllowed { token });
        }
        if self.ended {
            return Ok(());
        }
        if self.vocabulary.is_eos(token) {
            self.ended = true;
            self.allowed = Some(self.eos_set());
            return Ok(());
        }
        self.allowed = None;
        self.matcher
            .consume_token(token)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Whether the output is complete: an end-of-sequence token was accepted, or nothing but
    /// one can follow.
    pub fn is_finished(&self) -> bool {
        self.ended || (self.matcher.is_stopped() && !self.matcher.is_error())
    }

    /// Whether the output so far is a whole one, so that an end-of-sequence token is allowed
    /// now (it may also go on, like `12` can become `123`).
    pub fn can_finish(&mut self) -> Result<bool, Error> {
        let eos = self.vocabulary.eos_tokens()[0];
        Ok(self.allowed_tokens()?.contains(eos))
    }

    fn eos_set(&self) -> TokenSet {
        let mut set = SimpleVob::alloc(self.vocabulary.size());
        for &eos in self.vocabulary.eos_tokens() {
            set.allow_token(eos);
        }
        TokenSet(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_move_to_the_engine_thread() {
        fn send<T: Send>() {}
        fn shared<T: Send + Sync>() {}
        send::<Constraint>();
        shared::<Vocabulary>();
        shared::<TokenSet>();
    }

    #[test]
    fn masking_logits_covers_padding_and_partial_words() {
        let mut set = SimpleVob::alloc(40);
        set.allow_token(0);
        set.allow_token(33);
        let mut logits = vec![0.0f32; 70];
        TokenSet(set).apply_to_logits(&mut logits);
        let kept: Vec<usize> = (0..70).filter(|&i| logits[i] == 0.0).collect();
        assert_eq!(kept, [0, 33]);
    }
}
