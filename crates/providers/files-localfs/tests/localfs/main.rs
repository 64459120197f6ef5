//! Integration tests of `inline::localfs`, one module per topic.

mod durability;
mod lifecycle;
mod support;
