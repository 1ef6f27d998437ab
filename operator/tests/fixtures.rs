//! Ingestors the tests start from.

use killkrill_operator::crd::{
    CaptureMode, Ingestor, IngestorSpec, ListenerProtocol, ListenerSpec, RetentionSpec, StoreSpec,
};

pub const NAMESPACE: &str = "logs";
pub const NAME: &str = "edge";
pub const UID: &str = "3f1c0e7a-0000-4000-8000-00000000ed9e";

pub fn spec() -> IngestorSpec {
    IngestorSpec {
        image: "registry.example/killkrill:0.1.0".into(),
        agent_image: None,
        node_selector: [("killkrill.io/ingest".to_string(), "true".to_string())].into(),
        tolerations: Vec::new(),
        interface: "eth0".into(),
        capture_mode: CaptureMode::Auto,
        data_plane_cores: vec![2, 3],
        listeners: vec![
            ListenerSpec { protocol: ListenerProtocol::SyslogUdp, port: 514 },
            ListenerSpec { protocol: ListenerProtocol::SyslogTcp, port: 514 },
        ],
        store: StoreSpec::default(),
        retention: RetentionSpec { max_age: Some("14d".into()), max_bytes: Some("200Gi".into()) },
        resources: None,
        agent_resources: None,
        api_key_secret_ref: None,
    }
}

/// An Ingestor as the API server would hand it over: named, namespaced, with a uid and
/// a generation.
pub fn ingestor(spec: IngestorSpec) -> Ingestor {
    let mut ingestor = Ingestor::new(NAME, spec);
    ingestor.metadata.namespace = Some(NAMESPACE.into());
    ingestor.metadata.uid = Some(UID.into());
    ingestor.metadata.generation = Some(1);
    ingestor.metadata.resource_version = Some("1".into());
    ingestor
}
