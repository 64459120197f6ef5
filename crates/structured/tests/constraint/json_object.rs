//! `{"type": "json_object"}`: any JSON object.

use llama_stack_structured::{Constraint, Format};
use serde_json::Value;

use crate::support::{random_walk, vocabulary};

#[test]
fn random_walks_give_json_objects() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let mut ended = 0;
    for seed in 0..50 {
        let mut constraint = Constraint::new(vocabulary.clone(), &Format::JsonObject).unwrap();
        let walk = random_walk(&mut constraint, 1000 + seed, 400, |text, eos_allowed| {
            let is_object = serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object());
            assert_eq!(eos_allowed, is_object, "seed {seed}: {text:?}");
        });
        if walk.ended {
            ended += 1;
            let value: Value = serde_json::from_str(&walk.text).unwrap();
            assert!(value.is_object(), "{}", walk.text);
        }
    }
    assert!(ended >= 45, "only {ended} of 50 walks ended");
}
