//! Code snippets for the detection tests and the benchmark: insecure ones with the exact rule
//! ids each must produce (in order of first finding), and safe ones that must produce none.

mod insecure;
mod safe;

pub use insecure::INSECURE;
pub use safe::SAFE;

/// A snippet that must be flagged.
pub struct Insecure {
    pub language: &'static str,
    pub code: &'static str,
    pub expected: &'static [&'static str],
}

/// A snippet that must pass.
pub struct Safe {
    pub language: &'static str,
    pub code: &'static str,
}

pub(crate) const fn insecure(
    language: &'static str,
    code: &'static str,
    expected: &'static [&'static str],
) -> Insecure {
    Insecure {
        language,
        code,
        expected,
    }
}

pub(crate) const fn safe(language: &'static str, code: &'static str) -> Safe {
    Safe { language, code }
}
