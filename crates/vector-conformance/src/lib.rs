//! The conformance suite every `VectorIoProvider` passes: insert, search in every mode,
//! filters, deletion, expiry and reopening.
