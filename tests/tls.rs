//! TLS on the API and mutual TLS between peers, with a real three-node cluster and certificates
//! made for the test: the cluster forms over mTLS, clients that trust the CA use the API, and
//! the peer protocol refuses callers without a certificate from the cluster CA.

mod support;

use std::time::Duration;

use belfry::api::client::{ApiClient, ClientConfig};
use belfry::api::pb;
use belfry::raft::network::proto::peer_client::PeerClient;
use belfry::raft::network::proto::PeerRequest;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::procs::{ProcCluster, ADMIN_TOKEN};
use support::RedisServer;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// A CA and one certificate it signs for localhost and 127.0.0.1.
fn pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("node key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("node params");
    let cert = params.signed_by(&key, &issuer).expect("node cert");
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn https(addr: &str) -> Endpoint {
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_uses_tls_and_peers_need_a_cluster_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster_pki = pki("belfry");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write pem");
        path.display().to_string()
    };
    let (ca, cert, key) = (
        write("ca.pem", &cluster_pki.ca_pem),
        write("node.pem", &cluster_pki.cert_pem),
        write("node.key", &cluster_pki.key_pem),
    );
    let config = format!(
        "[security]\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\ntls_client_ca = \"{ca}\"\n"
    );
    let redis = RedisServer::start();
    let mut cluster = ProcCluster::start(3, &redis.url(0), "", &config);
    // A leader at all means the peers reached each other over mutual TLS.
    cluster.wait_for_leader(Duration::from_secs(30));
    let addr = cluster.nodes[1].addr.clone();

    let mut client = ApiClient::new(&ClientConfig {
        endpoint: addr.clone(),
        token: Some(ADMIN_TOKEN.into()),
        tls_ca: Some(cluster_pki.ca_pem.clone().into_bytes()),
        timeout: Some(Duration::from_secs(10)),
    })
    .expect("client");
    let status = client
        .cluster
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status over TLS")
        .into_inner();
    assert_eq!(status.members.len(), 3);

    // Plain text to a TLS port fails.
    let mut plain = ApiClient::new(&ClientConfig {
        endpoint: format!("http://{addr}"),
        token: Some(ADMIN_TOKEN.into()),
        tls_ca: None,
        timeout: Some(Duration::from_secs(5)),
    })
    .expect("client");
    assert!(plain
        .cluster
        .get_status(pb::GetStatusRequest {})
        .await
        .is_err());

    // The peer protocol, reached over TLS without a client certificate, is refused.
    let anonymous = https(&addr)
        .tls_config(
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cluster_pki.ca_pem)),
        )
        .expect("tls")
        .connect()
        .await
        .expect("TLS connection without a client certificate");
    let refused = PeerClient::new(anonymous)
        .vote(PeerRequest {
            target: cluster.nodes[1].id,
            cluster: "belfry".into(),
            payload: b"{}".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // A certificate from another CA does not get through the handshake.
    let rogue = pki("rogue");
    let outcome = match https(&addr).tls_config(
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&cluster_pki.ca_pem))
            .identity(Identity::from_pem(&rogue.cert_pem, &rogue.key_pem)),
    ) {
        Ok(endpoint) => match endpoint.connect().await {
            Ok(channel) => PeerClient::new(channel)
                .vote(PeerRequest {
                    target: cluster.nodes[1].id,
                    cluster: "belfry".into(),
                    payload: b"{}".to_vec(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Err(err) => Err(tonic::Status::unavailable(err.to_string())),
        },
        Err(err) => Err(tonic::Status::unavailable(err.to_string())),
    };
    assert!(
        outcome.is_err(),
        "a rogue certificate reached the peer protocol"
    );
    let logs = cluster.log_text();
    assert!(!logs.contains("TLS is OFF"), "{logs}");
}
