//! TLS on the API and mutual TLS between peers, with a real three-node cluster and certificates
//! made for the test: the cluster forms over mTLS, clients that trust the CA use the API, and
//! the peer protocol refuses callers without a certificate from the cluster CA, before reading
//! what they send.

mod support;

use std::time::Duration;

use belfry::api::client::{ApiClient, ClientConfig};
use belfry::api::pb;
use belfry::raft::network::proto::peer_client::PeerClient;
use belfry::raft::network::proto::PeerRequest;
use belfry::raft::network::MAX_MESSAGE_BYTES;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::procs::ADMIN_TOKEN;
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
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", &config);
    // A leader at all means the peers reached each other over mutual TLS.
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
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
    let anonymous_channel = anonymous.clone();
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
    // Refused before its body is read: a message larger than any the node accepts gets the
    // same answer, not a complaint about its size.
    let oversized = PeerClient::new(anonymous_channel.clone())
        .max_encoding_message_size(usize::MAX)
        .forward(PeerRequest {
            target: cluster.nodes[1].id,
            cluster: "belfry".into(),
            payload: vec![b' '; MAX_MESSAGE_BYTES + 1],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        oversized.code(),
        tonic::Code::PermissionDenied,
        "{oversized:?}"
    );

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

/// With mutual TLS and a cluster secret both configured, a peer call needs both: the cluster's
/// certificate without the secret is refused, and so is the secret without a certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cluster_secret_as_well_peers_need_both() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster_pki = pki("belfry");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a file");
        path.display().to_string()
    };
    let secret = "tls-and-a-cluster-secret-0123456789";
    let (ca, cert, key, secret_file) = (
        write("ca.pem", &cluster_pki.ca_pem),
        write("node.pem", &cluster_pki.cert_pem),
        write("node.key", &cluster_pki.key_pem),
        write("cluster-secret", &format!("{secret}\n")),
    );
    let config = format!(
        "[security]\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\ntls_client_ca = \"{ca}\"\n\
         cluster_secret_file = \"{secret_file}\"\n"
    );
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(1, &redis.url(0), "", &config);
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let addr = cluster.nodes[0].addr.clone();
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cluster_pki.ca_pem));
    let member = https(&addr)
        .tls_config(tls.clone().identity(Identity::from_pem(
            &cluster_pki.cert_pem,
            &cluster_pki.key_pem,
        )))
        .expect("tls")
        .connect()
        .await
        .expect("TLS connection with the cluster's certificate");
    let anonymous = https(&addr)
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("TLS connection without a certificate");
    let stale_vote = serde_json::json!({"vote": {"leader_id": {"term": 0, "node_id": 9}, "committed": false}, "last_log_id": null});
    let call = |with_secret: bool| {
        let mut request = tonic::Request::new(PeerRequest {
            target: cluster.nodes[0].id,
            cluster: "belfry".into(),
            payload: stale_vote.to_string().into_bytes(),
            ..Default::default()
        });
        if with_secret {
            request.metadata_mut().insert(
                "x-belfry-cluster-secret",
                secret.parse().expect("ASCII secret"),
            );
        }
        request
    };

    let no_secret = PeerClient::new(member.clone())
        .vote(call(false))
        .await
        .unwrap_err();
    assert_eq!(
        no_secret.code(),
        tonic::Code::Unauthenticated,
        "{no_secret:?}"
    );
    let no_certificate = PeerClient::new(anonymous)
        .vote(call(true))
        .await
        .unwrap_err();
    assert_eq!(
        no_certificate.code(),
        tonic::Code::PermissionDenied,
        "{no_certificate:?}"
    );
    let reply = PeerClient::new(member)
        .vote(call(true))
        .await
        .expect("a member with both is answered");
    let result: serde_json::Value =
        serde_json::from_slice(&reply.into_inner().payload).expect("JSON reply");
    assert_eq!(result["Ok"]["vote_granted"], false, "{result}");
}
