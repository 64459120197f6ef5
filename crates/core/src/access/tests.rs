use super::*;
use serde_json::json;

fn user(principal: &str, roles: &[&str], teams: &[&str]) -> User {
    let mut attrs = std::collections::BTreeMap::new();
    if !roles.is_empty() {
        attrs.insert(
            "roles".into(),
            roles.iter().map(|s| s.to_string()).collect(),
        );
    }
    if !teams.is_empty() {
        attrs.insert(
            "teams".into(),
            teams.iter().map(|s| s.to_string()).collect(),
        );
    }
    User {
        principal: principal.into(),
        attributes: Some(attrs),
    }
}

fn policy(rules: serde_json::Value) -> AccessPolicy {
    let mut issues = Vec::new();
    let p = AccessPolicy::parse(Some(&rules), "server.auth.access_policy", &mut issues);
    assert!(issues.is_empty(), "{issues:?}");
    p
}

#[test]
fn default_policy_permits_owner_team_and_unowned_only() {
    let p = AccessPolicy::parse(None, "p", &mut Vec::new());
    let alice = user("alice", &[], &["ml"]);
    let bob = user("bob", &[], &["web"]);
    let carol = user("carol", &[], &["ml"]);
    for action in Action::ALL {
        assert!(p.allows(action, "file", "f1", Some(&alice), &alice));
        assert!(!p.allows(action, "file", "f1", Some(&alice), &bob));
        assert!(p.allows(action, "file", "f1", Some(&alice), &carol));
        assert!(p.allows(action, "model", "m", None, &bob));
    }
}

#[test]
fn first_matching_rule_wins_and_no_match_denies() {
    let p = policy(json!([
        {"forbid": {"actions": ["create", "delete"], "resource": "model::*"},
         "unless": "user with admin in roles", "description": "only admins change models"},
        {"permit": {"actions": ["read"], "resource": "model::*"}},
        {"permit": {"principal": "alice", "actions": ["create", "read", "update", "delete"],
                    "resource": "regex:vector_(db|store)::.*"}},
        {"permit": {"actions": ["read", "delete"]}, "when": ["user is owner"]},
    ]));
    let admin = user("root", &["admin"], &[]);
    let alice = user("alice", &["user"], &[]);
    let bob = user("bob", &["user"], &[]);
    assert!(!p.allows(Action::Create, "model", "m", None, &admin));
    assert!(!p.allows(Action::Create, "model", "m", None, &alice));
    assert!(p.allows(Action::Read, "model", "m", None, &bob));
    assert!(p.allows(Action::Delete, "vector_store", "vs_1", Some(&bob), &alice));
    assert!(!p.allows(Action::Delete, "vector_store", "vs_1", Some(&alice), &bob));
    assert!(p.allows(Action::Delete, "file", "f", Some(&bob), &bob));
    assert!(!p.allows(Action::Update, "file", "f", Some(&bob), &bob));
}

#[test]
fn bad_rules_are_all_reported_with_their_paths() {
    let mut issues = Vec::new();
    AccessPolicy::parse(
        Some(&json!([
            {"permit": {"actions": ["read", "fly"]}, "when": "user is admin"},
            {"permit": {"actions": ["read"]}, "forbid": {"actions": ["read"]}},
            {"permit": {"actions": ["read"], "resource": "regex:("}},
            "nope",
        ])),
        "server.auth.access_policy",
        &mut issues,
    );
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.auth.access_policy[0].permit.actions[1]",
            "server.auth.access_policy[0].when",
            "server.auth.access_policy[1]",
            "server.auth.access_policy[2].permit.resource",
            "server.auth.access_policy[3]",
        ]
    );
}

#[test]
fn route_policy_matches_exact_prefix_and_regex_paths() {
    let mut issues = Vec::new();
    let p = RoutePolicy::parse(
        Some(&json!([
            {"permit": {"paths": "*"}, "when": "user with admin in roles"},
            {"permit": {"paths": ["/v1/models*", "/v1/chat/completions"]}},
            {"permit": {"paths": "regex:/v1/(files|vector_stores)"}, "when": "user with rag in roles"},
        ])),
        "server.auth.route_policy",
        &mut issues,
    );
    assert!(issues.is_empty(), "{issues:?}");
    let admin = user("root", &["admin"], &[]);
    let rag = user("r", &["rag"], &[]);
    assert!(p.allows("/v1/agents", Some(&admin)));
    assert!(p.allows("/v1/models/m1/", None));
    assert!(p.allows("/v1/chat/completions", Some(&rag)));
    assert!(!p.allows("/v1/chat/completions/x", Some(&rag)));
    assert!(p.allows("/v1/files/f1/content", Some(&rag)));
    assert!(!p.allows("/v1/files", None));
    assert!(!p.allows("/v1/agents", Some(&rag)));
    assert!(RoutePolicy::default().allows("/v1/anything", None));
}

#[tokio::test]
async fn checks_hide_unreadable_resources_and_refuse_unpermitted_writes() {
    // The only test of this crate that turns enforcement on.
    assert!(enforce(policy(json!([
        {"permit": {"actions": ["read"]}, "when": "user in owners teams"},
        {"permit": {"actions": ["create", "read", "update", "delete"]}, "when": "user is owner"},
        {"permit": {"actions": ["create"]}},
    ]))));
    let alice = user("alice", &[], &["ml"]);
    let carol = user("carol", &[], &["ml"]);
    let bob = user("bob", &[], &["web"]);
    let nf = || Error::not_found("File 'f' not found");
    let owner = with_caller(Caller::User(alice.clone()), async {
        assert!(check_create("file", "f").is_ok());
        owner_for_new()
    })
    .await;
    assert_eq!(owner.as_ref(), Some(&alice));
    with_caller(Caller::User(carol), async {
        assert!(check(Action::Read, "file", "f", owner.as_ref(), nf).is_ok());
        let err = check(Action::Delete, "file", "f", owner.as_ref(), nf).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Forbidden);
        assert!(
            err.message()
                .contains("'carol' cannot perform action 'delete'")
        );
    })
    .await;
    with_caller(Caller::User(bob), async {
        let err = check(Action::Delete, "file", "f", owner.as_ref(), nf).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
    })
    .await;
    // Enforcing, work with no caller is denied; the server itself is not.
    assert!(check(Action::Read, "model", "m", None, nf).is_err());
    with_caller(Caller::System, async {
        assert!(check(Action::Delete, "file", "f", owner.as_ref(), nf).is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_scoped_stream_sees_its_caller_on_every_poll() {
    use futures::StreamExt;
    let caller = Some(Caller::User(User::new("dora")));
    let stream = scoped_stream(
        caller,
        futures::stream::iter(0..2).map(|_| current_user().map(|u| u.principal)),
    );
    let seen: Vec<_> = stream.collect().await;
    assert_eq!(seen, [Some("dora".to_string()), Some("dora".to_string())]);
}
