//! `remote::s3` against a real S3-compatible server (moto): the shared conformance suite, two
//! replicas on one bucket and one record store, the bucket checks at start-up, and where the
//! bytes and records go.

mod support;

use llama_stack_core::ErrorKind;
use llama_stack_memory::files::FilesProvider;
use llama_stack_provider_files_postgres::conformance;
use llama_stack_provider_files_s3::{RECORD_KIND, S3Files};
use object_store::ObjectStoreExt;

use support::{bucket, config, context, endpoint, fresh, registry};

#[tokio::test]
async fn conformance_suite() {
    let Some(endpoint) = endpoint() else { return };
    let (files, _dir) = fresh(&endpoint, "round-trip").await;
    conformance::round_trip(&files).await;
    conformance::foreign_ids_are_not_found(&files).await;
    conformance::content_is_exact(&files, 300 << 10).await;
    let (files, _dir) = fresh(&endpoint, "listing").await;
    conformance::listings_page_in_upload_order(&files).await;
    let (files, _dir) = fresh(&endpoint, "expiry").await;
    conformance::expired_files_are_gone(&files).await;
    conformance::owners_are_kept(&files).await;
}

#[tokio::test]
async fn replicas_on_one_bucket_and_store_share_files() {
    let Some(endpoint) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registry.db");
    let config = config(&endpoint, &bucket("replicas"));
    // Two servers: their own connections to the shared store, and both may create the bucket.
    let (store_a, store_b) = (registry(&db).await, registry(&db).await);
    let (a, b) = tokio::join!(
        S3Files::open(config.clone(), context(store_a)),
        S3Files::open(config.clone(), context(store_b))
    );
    conformance::replicas(&a.unwrap(), &b.unwrap()).await;
}

#[tokio::test]
async fn bytes_are_objects_named_by_id_and_records_live_in_the_store() {
    let Some(endpoint) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = registry(&dir.path().join("registry.db")).await;
    let name = bucket("layout");
    let files = S3Files::open(config(&endpoint, &name), context(store.clone()))
        .await
        .unwrap();
    let file = files
        .create(conformance::upload(
            "notes.txt",
            "assistants",
            b"in the bucket",
        ))
        .await
        .unwrap();
    // Read with a client of its own, as another replica or an operator would.
    let bucket_store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&name)
        .with_region("us-east-1")
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .unwrap();
    let object = object_store::path::Path::from(file.id.as_str());
    let got = bucket_store
        .get(&object)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), b"in the bucket");
    let record = store.get(RECORD_KIND, &file.id).await.unwrap().unwrap();
    assert_eq!(record["filename"], "notes.txt");
    assert_eq!(record["bytes"], 13);

    // An object removed behind the provider's back is an error, not an empty file.
    bucket_store.delete(&object).await.unwrap();
    let err = files.content(&file.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    files.delete(&file.id).await.unwrap();
    assert!(store.get(RECORD_KIND, &file.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_missing_bucket_stops_the_start_unless_it_may_be_created() {
    let Some(endpoint) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = registry(&dir.path().join("registry.db")).await;
    let name = bucket("missing");
    let mut config = config(&endpoint, &name);
    config.auto_create_bucket = false;
    let err = S3Files::open(config.clone(), context(store.clone()))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(
        err.message().contains(&format!("{endpoint}/{name}")),
        "{err}"
    );
    assert!(err.message().contains("auto_create_bucket"), "{err}");
    config.auto_create_bucket = true;
    S3Files::open(config.clone(), context(store.clone()))
        .await
        .unwrap();
    // Now it exists, so a start without auto_create_bucket succeeds.
    config.auto_create_bucket = false;
    S3Files::open(config, context(store)).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_endpoint_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let store = registry(&dir.path().join("registry.db")).await;
    let err = S3Files::open(config(&endpoint, "files"), context(store))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
    assert!(err.message().contains(&endpoint), "{err}");
}

/// The provider is what the distribution builds from a run.yaml `config:` block.
#[tokio::test]
async fn builds_from_a_config_block() {
    let Some(endpoint) = endpoint() else { return };
    let mut providers = llama_stack_stack::ProviderRegistry::new();
    llama_stack_provider_files_s3::register(&mut providers);
    let spec = providers.get("remote::s3").unwrap();
    let block = serde_json::json!({
        "bucket_name": bucket("build"), "region": "us-east-1",
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
        "endpoint_url": endpoint, "auto_create_bucket": true,
        "metadata_store": {"table_name": "s3_files_metadata", "backend": "sql_default"},
    });
    assert!((spec.validate)(&block).is_empty());
    let dir = tempfile::tempdir().unwrap();
    let store = registry(&dir.path().join("registry.db")).await;
    let instance = (spec.build)(block, context(store)).await.unwrap();
    let llama_stack_stack::ProviderInstance::Files(files) = instance else {
        panic!("not a files provider");
    };
    let file = files
        .create(conformance::upload("b.txt", "assistants", b"b"))
        .await
        .unwrap();
    assert_eq!(files.content(&file.id).await.unwrap(), b"b");
}
