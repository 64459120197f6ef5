//! Broken run.yaml files: every problem is reported, with its path, in one pass.

use llama_stack_distribution::{ConfigErrors, LoadedConfig, builtin_registry, load_with};

use crate::support::{env, expect, fixture};

fn load_fixture(name: &str) -> Result<LoadedConfig, ConfigErrors> {
    load_with(&fixture(name), &env(&[]), &builtin_registry())
}

fn errors(name: &str) -> ConfigErrors {
    match load_fixture(name) {
        Ok(loaded) => panic!("{name} should not load, got {loaded:?}"),
        Err(errors) => errors,
    }
}

#[test]
fn unknown_provider_type_lists_the_known_types() {
    let errors = errors("unknown_provider_type.yaml");
    let p = expect(
        &errors,
        "providers.inference[0].provider_type",
        &["remote::bedrock", "inline::candle", "remote::ollama"],
    );
    assert_eq!((p.line, p.column), (Some(6), Some(5)));
    assert_eq!(errors.problems.len(), 1, "{errors}");
}

/// A server must not start open, or half-guarded, while the file asks for authentication it
/// cannot honour; TLS files that are not there stop it too. The (upstream-shaped) quota is fine.
#[test]
fn bad_auth_and_missing_tls_files_stop_the_start_with_their_paths() {
    let errors = errors("server_unhonoured.yaml");
    for (path, words) in [
        (
            "server.auth.config.algorithms[1]",
            &["'none' is not a signature algorithm"][..],
        ),
        (
            "server.auth.access_policy[0].when",
            &["unknown condition", "user is owner"][..],
        ),
        (
            "server.tls_certfile",
            &["/etc/ssl/server.pem", "not a readable file"][..],
        ),
        ("server.tls_keyfile", &["/etc/ssl/server.key"][..]),
    ] {
        expect(&errors, path, words);
    }
    assert_eq!(errors.problems.len(), 4, "{errors}");
}

#[test]
fn a_bad_quota_is_reported_field_by_field() {
    let errors = errors("quota_bad.yaml");
    expect(
        &errors,
        "server.quota.anonymous_max_requests",
        &["at least 1"],
    );
    expect(
        &errors,
        "server.quota.period",
        &["day, hour or minute", "fortnight"],
    );
    expect(&errors, "server.quota.burst", &["unknown field"]);
    assert_eq!(errors.problems.len(), 3, "{errors}");
}

#[test]
fn tls_needs_a_certificate_and_its_key_together() {
    let errors = errors("tls_half.yaml");
    expect(&errors, "server.tls_keyfile", &["missing", "private key"]);
    assert_eq!(errors.problems.len(), 1, "{errors}");
}

#[test]
fn unknown_config_field_is_reported_at_its_path() {
    let errors = errors("unknown_config_field.yaml");
    let p = expect(&errors, "providers.inference[0].config.colour", &["colour"]);
    assert_eq!((p.line, p.column), (Some(9), Some(7)));
    assert_eq!(errors.problems.len(), 1, "{errors}");
}

#[test]
fn missing_required_variable_names_variable_and_path() {
    let errors = errors("missing_env.yaml");
    let p = expect(
        &errors,
        "providers.inference[0].config.model_path",
        &["LLAMA_STACK_FIXTURE_MODEL_DIR"],
    );
    assert_eq!(p.line, Some(8));
    assert_eq!(errors.problems.len(), 1, "{errors}");
    let shown = errors.to_string();
    assert!(
        shown.starts_with("providers.inference[0].config.model_path (line 8, column 7): "),
        "{shown}"
    );

    // The same file loads once the variable is given.
    let vars = env(&[("LLAMA_STACK_FIXTURE_MODEL_DIR", "/models/llama")]);
    let loaded = load_with(&fixture("missing_env.yaml"), &vars, &builtin_registry()).unwrap();
    assert_eq!(loaded.providers[0].config["model_path"], "/models/llama");
}

#[test]
fn bad_port_is_reported() {
    let errors = errors("bad_port.yaml");
    let p = expect(&errors, "server.port", &["1024", "65535", "80"]);
    assert_eq!(p.line, Some(8));
    assert_eq!(errors.problems.len(), 1, "{errors}");
}

#[test]
fn a_playground_that_is_not_a_boolean_is_reported() {
    let errors = errors("playground_bad.yaml");
    let p = expect(&errors, "server.playground", &["sometimes", "boolean"]);
    assert_eq!(p.line, Some(8));
    assert_eq!(errors.problems.len(), 1, "{errors}");
}

#[test]
fn duplicate_provider_id_is_reported() {
    let errors = errors("duplicate_provider_id.yaml");
    let p = expect(
        &errors,
        "providers.inference[1].provider_id",
        &["duplicate", "candle", "providers.inference[0]"],
    );
    assert_eq!(p.line, Some(7));
    assert_eq!(errors.problems.len(), 1, "{errors}");
}

#[test]
fn model_on_unknown_provider_is_reported() {
    let errors = errors("model_unknown_provider.yaml");
    let p = expect(&errors, "models[0].provider_id", &["ollama", "candle"]);
    assert_eq!(p.line, Some(9));
    assert_eq!(errors.problems.len(), 1, "{errors}");
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let errors = errors("syntax_error.yaml");
    assert_eq!(errors.problems.len(), 1, "{errors}");
    let p = &errors.problems[0];
    assert!(p.message.contains("YAML"), "{p}");
    assert_eq!(p.line, Some(7), "{p}");
    assert!(p.column.is_some(), "{p}");
    let shown = errors.to_string();
    assert!(
        shown.starts_with("(line 7, column 4): YAML syntax error: "),
        "{shown}"
    );
    assert!(
        !shown.contains("at line 7 column 4"),
        "position given twice: {shown}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = errors("many_problems.yaml");
    let expected: &[(&str, &[&str], Option<usize>)] = &[
        ("version", &["3", "version 2"], Some(1)),
        ("colour", &["unknown key", "image_name"], Some(3)),
        ("apis[1]", &["safety", "no provider"], Some(6)),
        ("apis[2]", &["astrology", "inference"], Some(7)),
        (
            "providers.inference[0].config.model_path",
            &["LLAMA_STACK_FIXTURE_MODEL_DIR"],
            Some(13),
        ),
        (
            "providers.inference[0].config.max_queue",
            &["many"],
            Some(14),
        ),
        (
            "providers.inference[0].config.colour",
            &["colour"],
            Some(15),
        ),
        (
            "providers.inference[1].provider_id",
            &["duplicate"],
            Some(16),
        ),
        (
            "providers.inference[2].provider_type",
            &["remote::bedrock", "inline::candle"],
            Some(19),
        ),
        (
            "providers.inference[2].config.url",
            &["${env.OLLAMA_URL:=http://localhost:11434}"],
            Some(20),
        ),
        ("models[0].provider_id", &["vllm"], Some(23)),
        (
            "models[1].metadata.embedding_dimension",
            &["embedding_dimension"],
            None,
        ),
        ("models[2].model_type", &["chat"], Some(29)),
        ("server.port", &["70000"], Some(31)),
    ];
    for (path, needles, line) in expected {
        let p = expect(&errors, path, needles);
        assert_eq!(p.line, *line, "line of `{path}`: {p}");
    }
    assert_eq!(
        errors.problems.len(),
        expected.len(),
        "unexpected extra problems:\n{errors}"
    );
    // Sorted in file order, one per line.
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), expected.len(), "{shown}");
    assert!(
        shown
            .lines()
            .next()
            .unwrap()
            .starts_with("version (line 1, column 1): ")
    );
}

#[test]
fn upstream_style_file_loads_with_notices() {
    let loaded = load_fixture("upstream_style.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.image_name, "upstream-style");
    // Upstream's faiss provider loads as inline::sqlite-vec.
    assert_eq!(
        loaded.apis,
        [
            llama_stack_core::Api::Agents,
            llama_stack_core::Api::Inference,
            llama_stack_core::Api::Safety,
            llama_stack_core::Api::ToolRuntime,
            llama_stack_core::Api::VectorIo
        ]
    );
    assert_eq!(loaded.providers.len(), 5);
    assert_eq!(loaded.providers[0].provider_id, "candle");
    // The same upstream name is sqlite-vec under vector_io and the agents provider under agents.
    assert_eq!(loaded.providers[1].provider_type, "inline::sqlite-vec");
    assert_eq!(loaded.providers[2].provider_type, "inline::llama-guard");
    assert_eq!(loaded.providers[3].provider_type, "inline::meta-reference");
    // The shield is registered at start-up, on the only safety provider.
    assert_eq!(loaded.config.shields.len(), 1);
    assert_eq!(
        loaded.config.shields[0].shield_id,
        "meta-llama/Llama-Guard-3-1B"
    );
    assert_eq!(
        loaded.config.shields[0].provider_id.as_deref(),
        Some("llama-guard")
    );
    assert_eq!(loaded.models.len(), 1);
    assert_eq!(loaded.models[0].path, "models[0]");
    assert_eq!(
        loaded.models[0].request.model_id,
        "meta-llama/Llama-3.2-1B-Instruct"
    );
    assert_eq!(
        loaded.registry_db_path(),
        std::path::Path::new("/home/tester/.llama/distributions/upstream-style/registry.db")
    );

    let notices = loaded.not_implemented.join("\n");
    assert!(!notices.contains("safety"), "{notices}");
    for path in ["providers.telemetry[0]:", "inference_store:", "logging:"] {
        assert!(
            notices.contains(path),
            "no notice for `{path}` in:\n{notices}"
        );
    }
    let disabled = loaded.disabled.join("\n");
    for path in ["providers.inference[0]:", "models[1]:", "models[2]:"] {
        assert!(
            disabled.contains(path),
            "`{path}` not disabled in:\n{disabled}"
        );
    }

    // Setting the variable turns the ollama provider on.
    let vars = env(&[("OLLAMA_URL", "http://localhost:11434")]);
    let loaded = load_with(&fixture("upstream_style.yaml"), &vars, &builtin_registry()).unwrap();
    let types: Vec<&str> = loaded.providers.iter().map(|p| p.provider_type).collect();
    assert_eq!(
        types,
        [
            "remote::ollama",
            "inline::candle",
            "inline::sqlite-vec",
            "inline::llama-guard",
            "inline::meta-reference",
            "remote::brave-search"
        ]
    );
}

#[test]
fn unreadable_file_is_one_problem() {
    let errors = errors("does_not_exist.yaml");
    assert_eq!(errors.problems.len(), 1);
    assert!(errors.to_string().contains("cannot read"), "{errors}");
}
