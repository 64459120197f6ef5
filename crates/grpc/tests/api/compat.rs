//! The proto compatibility guard: clients built against the committed protos must keep
//! working, so nothing `proto/descriptor.binpb` lists may be removed, renumbered or retyped,
//! and the file must not fall behind the protos. See proto/README.md.
//!
//! Refresh the file after a compatible change with
//! `LLAMA_STACK_UPDATE_PROTO_DESCRIPTOR=1 cargo test -p llama-stack-grpc --test api compat`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message as _;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    ServiceDescriptorProto,
};

const UPDATE_VAR: &str = "LLAMA_STACK_UPDATE_PROTO_DESCRIPTOR";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/descriptor.binpb")
}

/// The API files only, without comments (which may change freely), in name order.
fn committed_form(set: FileDescriptorSet) -> FileDescriptorSet {
    let mut file: Vec<_> = set
        .file
        .into_iter()
        .filter(|f| f.package() == llama_stack_grpc::PACKAGE)
        .map(|mut f| {
            f.source_code_info = None;
            f
        })
        .collect();
    file.sort_by(|a, b| a.name().cmp(b.name()));
    FileDescriptorSet { file }
}

fn current() -> FileDescriptorSet {
    committed_form(FileDescriptorSet::decode(llama_stack_grpc::FILE_DESCRIPTOR_SET).unwrap())
}

/// Every message, enum and service by full name (`llama_stack.v1.Message.Role`).
#[derive(Default)]
struct Index<'a> {
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
    services: BTreeMap<String, &'a ServiceDescriptorProto>,
}

impl<'a> Index<'a> {
    fn of(set: &'a FileDescriptorSet) -> Self {
        let mut index = Index::default();
        for file in &set.file {
            let prefix = file.package().to_string();
            for message in &file.message_type {
                index.add_message(&prefix, message);
            }
            for e in &file.enum_type {
                index.enums.insert(format!("{prefix}.{}", e.name()), e);
            }
            for s in &file.service {
                index.services.insert(format!("{prefix}.{}", s.name()), s);
            }
        }
        index
    }

    fn add_message(&mut self, prefix: &str, message: &'a DescriptorProto) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            // Map entries are generated from `map<,>` fields, which the field check covers.
            if !nested.options.as_ref().is_some_and(|o| o.map_entry()) {
                self.add_message(&name, nested);
            }
        }
        for e in &message.enum_type {
            self.enums.insert(format!("{name}.{}", e.name()), e);
        }
        self.messages.insert(name, message);
    }
}

fn reserved_number(message: &DescriptorProto, number: i32) -> bool {
    // Message reserved ranges are end-exclusive.
    message
        .reserved_range
        .iter()
        .any(|r| r.start() <= number && number < r.end())
}

fn field_shape(f: &FieldDescriptorProto) -> String {
    format!("{:?} {:?} {}", f.label(), f.r#type(), f.type_name())
}

fn check_message(name: &str, old: &DescriptorProto, new: &DescriptorProto, out: &mut Vec<String>) {
    for field in &old.field {
        let number = field.number();
        match new.field.iter().find(|f| f.number() == number) {
            Some(now) if now.name() != field.name() => out.push(format!(
                "{name}: field number {number} was `{}` and is now `{}`; give the new field a new number",
                field.name(),
                now.name()
            )),
            Some(now) if field_shape(now) != field_shape(field) => out.push(format!(
                "{name}.{}: its type changed from `{}` to `{}`",
                field.name(),
                field_shape(field),
                field_shape(now)
            )),
            Some(_) => {}
            None => {
                let reserved = reserved_number(new, number)
                    && new.reserved_name.iter().any(|n| n == field.name());
                if !reserved {
                    out.push(format!(
                        "{name}.{} (field {number}) was removed; keep it, or add `reserved {number}; reserved \"{}\";` to the message",
                        field.name(),
                        field.name()
                    ));
                }
            }
        }
    }
    for field in &new.field {
        if reserved_number(old, field.number())
            || old.reserved_name.iter().any(|n| n == field.name())
        {
            out.push(format!(
                "{name}.{} reuses reserved field number {} or name; pick a new one",
                field.name(),
                field.number()
            ));
        }
    }
}

fn check_enum(
    name: &str,
    old: &EnumDescriptorProto,
    new: &EnumDescriptorProto,
    out: &mut Vec<String>,
) {
    for value in &old.value {
        match new.value.iter().find(|v| v.name() == value.name()) {
            Some(now) if now.number() != value.number() => out.push(format!(
                "{name}.{}: its number changed from {} to {}",
                value.name(),
                value.number(),
                now.number()
            )),
            Some(_) => {}
            None => out.push(format!("{name}.{} was removed", value.name())),
        }
    }
}

fn check_service(
    name: &str,
    old: &ServiceDescriptorProto,
    new: &ServiceDescriptorProto,
    out: &mut Vec<String>,
) {
    let shape = |m: &prost_types::MethodDescriptorProto| {
        format!(
            "({}{}) -> {}{}",
            if m.client_streaming() { "stream " } else { "" },
            m.input_type(),
            if m.server_streaming() { "stream " } else { "" },
            m.output_type()
        )
    };
    for method in &old.method {
        match new.method.iter().find(|m| m.name() == method.name()) {
            Some(now) if shape(now) != shape(method) => out.push(format!(
                "{name}/{}: its signature changed from {} to {}",
                method.name(),
                shape(method),
                shape(now)
            )),
            Some(_) => {}
            None => out.push(format!("{name}/{} was removed", method.name())),
        }
    }
}

/// Everything in `new` that breaks a client built against `old`.
fn breaking_changes(old: &FileDescriptorSet, new: &FileDescriptorSet) -> Vec<String> {
    let (old, new) = (Index::of(old), Index::of(new));
    let mut out = Vec::new();
    for (name, message) in &old.messages {
        match new.messages.get(name) {
            Some(now) => check_message(name, message, now, &mut out),
            None => out.push(format!("message {name} was removed")),
        }
    }
    for (name, e) in &old.enums {
        match new.enums.get(name) {
            Some(now) => check_enum(name, e, now, &mut out),
            None => out.push(format!("enum {name} was removed")),
        }
    }
    for (name, service) in &old.services {
        match new.services.get(name) {
            Some(now) => check_service(name, service, now, &mut out),
            None => out.push(format!("service {name} was removed")),
        }
    }
    out
}

#[test]
fn committed_protos_stay_compatible() {
    let path = committed_path();
    let now = current();
    let update = std::env::var_os(UPDATE_VAR).is_some();
    let committed = match std::fs::read(&path) {
        Ok(bytes) => FileDescriptorSet::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display())),
        Err(_) if update => FileDescriptorSet::default(),
        Err(e) => panic!(
            "{} cannot be read ({e}); create it with `{UPDATE_VAR}=1 cargo test -p llama-stack-grpc --test api compat`",
            path.display()
        ),
    };
    let broken = breaking_changes(&committed, &now);
    assert!(
        broken.is_empty(),
        "the protos break clients built against proto/descriptor.binpb:\n- {}",
        broken.join("\n- ")
    );
    if update {
        std::fs::write(&path, now.encode_to_vec()).unwrap();
        return;
    }
    assert!(
        committed == now,
        "proto/descriptor.binpb is behind the protos: after a compatible change, refresh it with `{UPDATE_VAR}=1 cargo test -p llama-stack-grpc --test api compat` and commit it"
    );
}

fn message_mut<'a>(set: &'a mut FileDescriptorSet, name: &str) -> &'a mut DescriptorProto {
    set.file
        .iter_mut()
        .flat_map(|f| f.message_type.iter_mut())
        .find(|m| m.name() == name)
        .unwrap()
}

#[test]
fn removing_or_renumbering_a_field_is_caught() {
    let old = current();
    let mut removed = old.clone();
    message_mut(&mut removed, "ChatCompletionRequest")
        .field
        .retain(|f| f.name() != "tool_config");
    let found = breaking_changes(&old, &removed);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("ChatCompletionRequest.tool_config"),
        "{found:?}"
    );

    let mut reused = old.clone();
    let message = message_mut(&mut reused, "ChatCompletionRequest");
    message.field.retain(|f| f.name() != "tool_config");
    let mut other = message.field[0].clone();
    other.name = Some("replacement".into());
    other.number = Some(5);
    message.field.push(other);
    let found = breaking_changes(&old, &reused);
    assert!(
        found.iter().any(|f| f.contains("field number 5")),
        "{found:?}"
    );

    let mut retyped = old.clone();
    message_mut(&mut retyped, "Metric").field[1].r#type =
        Some(prost_types::field_descriptor_proto::Type::Float as i32);
    assert_eq!(breaking_changes(&old, &retyped).len(), 1);
}

#[test]
fn a_reserved_removal_passes_and_reusing_it_is_caught() {
    let old = current();
    let mut reserved = old.clone();
    let message = message_mut(&mut reserved, "ChatCompletionRequest");
    message.field.retain(|f| f.name() != "tool_config");
    message
        .reserved_range
        .push(prost_types::descriptor_proto::ReservedRange {
            start: Some(5),
            end: Some(6),
        });
    message.reserved_name.push("tool_config".into());
    assert_eq!(breaking_changes(&old, &reserved), Vec::<String>::new());

    let mut reused = reserved.clone();
    let message = message_mut(&mut reused, "ChatCompletionRequest");
    let mut again = message.field[0].clone();
    again.name = Some("new_field".into());
    again.number = Some(5);
    message.field.push(again);
    let found = breaking_changes(&reserved, &reused);
    assert!(found.iter().any(|f| f.contains("reserved")), "{found:?}");
}

#[test]
fn removed_enum_values_methods_and_messages_are_caught() {
    let old = current();
    let mut changed = old.clone();
    for file in &mut changed.file {
        for e in &mut file.enum_type {
            if e.name() == "StopReason" {
                e.value.retain(|v| v.name() != "STOP_REASON_OUT_OF_TOKENS");
            }
        }
        for s in &mut file.service {
            if s.name() == "InferenceService" {
                s.method.retain(|m| m.name() != "Embeddings");
            }
        }
        file.message_type.retain(|m| m.name() != "TopKSampling");
    }
    let found = breaking_changes(&old, &changed);
    assert!(
        found
            .iter()
            .any(|f| f.contains("STOP_REASON_OUT_OF_TOKENS")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("InferenceService/Embeddings")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("message llama_stack.v1.TopKSampling")),
        "{found:?}"
    );
    // Adding things is never breaking.
    assert!(breaking_changes(&changed, &old).is_empty());
}
