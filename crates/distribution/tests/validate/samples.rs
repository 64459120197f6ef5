//! Every registered provider's sample config validates, alone and inside a run.yaml.

use llama_stack_distribution::{builtin_registry, env::substitute, load_str};

use crate::support::env;

#[test]
fn every_sample_config_validates() {
    let registry = builtin_registry();
    assert!(registry.specs().count() > 0);
    for spec in registry.specs() {
        let yaml: serde_json::Value = serde_norway::from_str(spec.sample_config)
            .unwrap_or_else(|e| panic!("{}: sample_config is not YAML: {e}", spec.provider_type));
        let (config, errors) = substitute(&yaml, &env(&[]));
        assert!(errors.is_empty(), "{}: {errors:?}", spec.provider_type);
        let issues = (spec.validate)(&config);
        assert!(issues.is_empty(), "{}: {issues:?}", spec.provider_type);

        let indented: String = spec
            .sample_config
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect();
        let run_yaml = format!(
            "version: 2\nimage_name: sample\nproviders:\n  {api}:\n  - provider_id: sample\n    provider_type: {ty}\n    config:\n{indented}",
            api = spec.api,
            ty = spec.provider_type,
        );
        let loaded = load_str(&run_yaml, &env(&[]), &registry)
            .unwrap_or_else(|e| panic!("{}:\n{e}\n{run_yaml}", spec.provider_type));
        assert_eq!(loaded.providers.len(), 1);
        assert_eq!(loaded.apis, [spec.api]);
    }
}
