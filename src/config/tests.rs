//! Configuration: precedence, refusals naming the setting, and security defaults.

use std::path::Path;
use std::time::Duration;

use super::*;

fn args() -> ServerArgs {
    ServerArgs {
        node_id: Some(2),
        data_dir: Some("/tmp/x".into()),
        insecure_no_auth: true,
        insecure_no_tls: true,
        insecure_no_peer_auth: true,
        ..Default::default()
    }
}

#[test]
fn flags_override_the_file_and_defaults_fill_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("belfry.toml");
    std::fs::write(
        &path,
        "node_id = 1\nlisten = \"127.0.0.1:7401\"\ndata_dir = \"/var/lib/belfry\"\n[peers]\n1 = \"a:7400\"\n2 = \"b:7400\"\n[redis]\nurl = \"redis://r:6379/2\"\n[raft]\nheartbeat_ms = 50\nmax_clock_offset_ms = 400\n",
    )
    .unwrap();
    let config = NodeConfig::resolve(&ServerArgs {
        config: Some(path),
        ..args()
    })
    .unwrap();
    assert_eq!(config.node_id, 2);
    assert_eq!(config.listen, "127.0.0.1:7401");
    assert_eq!(config.advertise, "127.0.0.1:7401");
    assert_eq!(config.peers.len(), 2);
    assert_eq!(config.redis.url, "redis://r:6379/2");
    assert_eq!(config.raft.heartbeat, Duration::from_millis(50));
    assert_eq!(config.raft.election_max, Duration::from_millis(900));
    assert_eq!(config.raft.max_clock_offset, Duration::from_millis(400));
}

#[test]
fn the_clock_bound_defaults_to_250_ms_and_the_flag_overrides_it() {
    let config = NodeConfig::resolve(&args()).unwrap();
    assert_eq!(config.raft.max_clock_offset, Duration::from_millis(250));
    let config = NodeConfig::resolve(&ServerArgs {
        max_clock_offset_ms: Some(1_000),
        ..args()
    })
    .unwrap();
    assert_eq!(config.raft.max_clock_offset, Duration::from_secs(1));
    match NodeConfig::resolve(&ServerArgs {
        max_clock_offset_ms: Some(0),
        ..args()
    }) {
        Err(ConfigError::Invalid { setting, .. }) => assert_eq!(setting, "max_clock_offset_ms"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn refusals_name_the_setting() {
    let setting = |a: ServerArgs| match NodeConfig::resolve(&a).unwrap_err() {
        ConfigError::Invalid { setting, .. } => setting,
        other => panic!("{other}"),
    };
    assert_eq!(
        setting(ServerArgs {
            node_id: None,
            ..args()
        }),
        "node_id"
    );
    assert_eq!(
        setting(ServerArgs {
            data_dir: None,
            ..args()
        }),
        "data_dir"
    );
    assert_eq!(
        setting(ServerArgs {
            peers: Some("1=a:1,3=b:2".into()),
            ..args()
        }),
        "peers"
    );
    assert_eq!(
        setting(ServerArgs {
            peers: Some("2=nohostport".into()),
            ..args()
        }),
        "peers"
    );
    assert_eq!(
        setting(ServerArgs {
            listen: Some("7400".into()),
            ..args()
        }),
        "listen"
    );
    assert_eq!(
        setting(ServerArgs {
            election_timeout_ms: Some("900-500".into()),
            ..args()
        }),
        "election_timeout_ms"
    );
    assert_eq!(
        setting(ServerArgs {
            log_format: Some("xml".into()),
            ..args()
        }),
        "log_format"
    );
}

#[test]
fn security_is_off_only_when_asked() {
    let secure = ServerArgs {
        insecure_no_auth: false,
        insecure_no_tls: false,
        insecure_no_peer_auth: false,
        ..args()
    };
    let setting = |a: &ServerArgs| match NodeConfig::resolve(a).unwrap_err() {
        ConfigError::Invalid { setting, .. } => setting,
        other => panic!("{other}"),
    };
    assert_eq!(setting(&secure), "admin_token");
    let with_token = ServerArgs {
        admin_token: Some("t".into()),
        ..secure
    };
    assert_eq!(setting(&with_token), "tls_cert");
    let plain = ServerArgs {
        insecure_no_tls: true,
        readonly_token: Some("r".into()),
        ..with_token
    };
    assert_eq!(setting(&plain), "cluster_secret");
    let config = NodeConfig::resolve(&ServerArgs {
        cluster_secret: Some("0123456789abcdef".into()),
        ..plain
    })
    .unwrap();
    assert!(config.security.cluster_secret.is_some());
    let tokens = config.security.tokens.unwrap();
    assert_eq!((tokens.admin.len(), tokens.readonly.len()), (1, 1));
    assert!(config.security.tls.is_none());
}

#[test]
fn node_ids_follow_statefulset_ordinals() {
    assert_eq!(node_id_from_hostname("belfry-0").unwrap(), 1);
    assert_eq!(node_id_from_hostname("belfry-12.belfry-peers").unwrap(), 13);
    assert!(node_id_from_hostname("belfry").is_err());
}

#[test]
fn the_largest_ordinal_is_refused_not_overflowed() {
    // Found by fuzzing the configuration: `ordinal + 1` overflowed (a panic with overflow
    // checks, node id 0 without).
    let err = node_id_from_hostname("belfry-18446744073709551615").unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    assert_eq!(
        node_id_from_hostname("belfry-18446744073709551614").unwrap(),
        u64::MAX
    );
}

#[test]
fn an_unknown_file_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("belfry.toml");
    std::fs::write(&path, "node_id = 1\nnode_idd = 2\n").unwrap();
    let err = NodeConfig::resolve(&ServerArgs {
        config: Some(path),
        ..args()
    })
    .unwrap_err();
    assert!(err.to_string().contains("node_idd"), "{err}");
}

/// The setting a refused configuration names, and its message.
fn refusal(args: &ServerArgs) -> (&'static str, String) {
    match NodeConfig::resolve(args).unwrap_err() {
        ConfigError::Invalid { setting, reason } => (setting, reason),
        other => panic!("{other}"),
    }
}

fn with_tokens() -> ServerArgs {
    ServerArgs {
        insecure_no_auth: false,
        admin_token: Some("adm".into()),
        ..args()
    }
}

#[test]
fn blank_tokens_are_refused() {
    for blank in ["", "   ", "\t"] {
        let (setting, reason) = refusal(&ServerArgs {
            admin_token: Some(blank.into()),
            ..with_tokens()
        });
        assert_eq!(setting, "admin_token", "{blank:?}: {reason}");
        assert!(reason.contains("empty"), "{reason}");
        let (setting, _) = refusal(&ServerArgs {
            readonly_token: Some(blank.into()),
            ..with_tokens()
        });
        assert_eq!(setting, "readonly_token", "{blank:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("tokens");
    std::fs::write(&empty, "# rotated out\n\n   \n").unwrap();
    let (setting, reason) = refusal(&ServerArgs {
        readonly_token_file: Some(empty.clone()),
        ..with_tokens()
    });
    assert_eq!(setting, "readonly_token_file");
    assert!(reason.contains(&empty.display().to_string()), "{reason}");
    // A real token is kept without its surrounding whitespace.
    let config = NodeConfig::resolve(&ServerArgs {
        admin_token: Some(" adm \n".into()),
        ..with_tokens()
    })
    .unwrap();
    assert_eq!(
        config.security.tokens.unwrap().admin,
        vec!["adm".to_string()]
    );
}

fn plain() -> ServerArgs {
    ServerArgs {
        insecure_no_peer_auth: false,
        ..args()
    }
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn without_tls_peers_need_a_secret_or_an_explicit_flag() {
    assert_eq!(refusal(&plain()).0, "cluster_secret");
    let with_flag = NodeConfig::resolve(&args()).unwrap();
    assert!(with_flag.security.cluster_secret.is_none());
    let from_value = NodeConfig::resolve(&ServerArgs {
        cluster_secret: Some(SECRET.into()),
        ..plain()
    })
    .unwrap();
    let auth = from_value.security.peer_auth();
    assert!(auth.secret.is_some() && !auth.require_certificate);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-secret");
    std::fs::write(&file, format!("# current\n{SECRET}\n")).unwrap();
    let from_file = ServerArgs {
        cluster_secret_file: Some(file.clone()),
        ..plain()
    };
    assert!(NodeConfig::resolve(&from_file).is_ok());
    assert_eq!(
        refusal(&ServerArgs {
            cluster_secret: Some(SECRET.into()),
            ..from_file.clone()
        })
        .0,
        "cluster_secret"
    );
    assert_eq!(
        refusal(&ServerArgs {
            insecure_no_peer_auth: true,
            ..from_file
        })
        .0,
        "insecure_no_peer_auth"
    );
}

#[test]
fn blank_or_short_secrets_are_refused() {
    for (bad, words) in [("", "empty"), ("  \t ", "empty"), ("short", "at least 16")] {
        let (setting, reason) = refusal(&ServerArgs {
            cluster_secret: Some(bad.into()),
            ..plain()
        });
        assert_eq!(setting, "cluster_secret", "{bad:?}");
        assert!(reason.contains(words), "{bad:?}: {reason}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-secret");
    std::fs::write(&file, " \n\n").unwrap();
    let (setting, reason) = refusal(&ServerArgs {
        cluster_secret_file: Some(file.clone()),
        ..plain()
    });
    assert_eq!(setting, "cluster_secret_file");
    assert!(reason.contains(&file.display().to_string()), "{reason}");
    std::fs::write(&file, format!("{SECRET}\nnot long\n")).unwrap();
    assert_eq!(
        refusal(&ServerArgs {
            cluster_secret_file: Some(file),
            ..plain()
        })
        .0,
        "cluster_secret_file"
    );
}

#[test]
fn a_peer_address_listed_twice_is_refused() {
    let err = parse_peers("1=a:7400,2=b:7400,3=a:7400").unwrap_err();
    assert!(err.to_string().contains("a:7400"), "{err}");
    assert!(parse_peers("1=a:7400,1=b:7400").is_err());
    assert_eq!(parse_peers("1=a:7400, 2=a:7401").unwrap().len(), 2);
}

#[test]
fn a_bad_redis_url_is_refused() {
    for url in ["localhost:6379", "http://r:6379/0", "redis://r:6379/notadb"] {
        assert_eq!(
            refusal(&ServerArgs {
                redis_url: Some(url.into()),
                ..args()
            })
            .0,
            "redis_url",
            "{url}"
        );
    }
}

#[test]
fn tls_files_must_hold_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key, garbage, empty) = (
        write("cert.pem", &cert.pem()),
        write("key.pem", &key.serialize_pem()),
        write("garbage.pem", "not a pem file\n"),
        write("empty.pem", ""),
    );
    let tls = |c: &Path, k: &Path, ca: &Path| ServerArgs {
        insecure_no_tls: false,
        insecure_no_peer_auth: false,
        tls_cert: Some(c.to_path_buf()),
        tls_key: Some(k.to_path_buf()),
        tls_client_ca: Some(ca.to_path_buf()),
        ..args()
    };
    let config = NodeConfig::resolve(&tls(&cert, &key, &cert)).unwrap();
    // Mutual TLS authenticates peers: no secret is needed.
    let auth = config.security.peer_auth();
    assert!(auth.require_certificate && auth.secret.is_none());
    for (args, setting, file) in [
        (tls(&garbage, &key, &cert), "tls_cert", &garbage),
        (tls(&key, &key, &cert), "tls_cert", &key),
        (tls(&cert, &garbage, &cert), "tls_key", &garbage),
        (tls(&cert, &cert, &cert), "tls_key", &cert),
        (tls(&cert, &key, &empty), "tls_client_ca", &empty),
        (
            tls(&cert, &key, &dir.path().join("missing.pem")),
            "tls_client_ca",
            &dir.path().join("missing.pem"),
        ),
    ] {
        let (named, reason) = refusal(&args);
        assert_eq!(named, setting, "{reason}");
        assert!(reason.contains(&file.display().to_string()), "{reason}");
    }
}

#[test]
fn connection_limits_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("belfry.toml");
    std::fs::write(
        &path,
        "[connections]\nmax_connections = 64\nhandshake_timeout_ms = 1500\n",
    )
    .unwrap();
    let config = NodeConfig::resolve(&ServerArgs {
        config: Some(path.clone()),
        ..args()
    })
    .unwrap();
    assert_eq!(config.connections.max_connections, 64);
    assert_eq!(
        config.connections.handshake_timeout,
        Duration::from_millis(1500)
    );
    assert_eq!(config.connections.max_streams_per_connection, 256);
    assert_eq!(
        NodeConfig::resolve(&args()).unwrap().connections,
        ConnectionLimits::default()
    );
    std::fs::write(&path, "[connections]\nmax_streams_per_connection = 0\n").unwrap();
    assert_eq!(
        refusal(&ServerArgs {
            config: Some(path),
            ..args()
        })
        .0,
        "connections.max_streams_per_connection"
    );
}

#[test]
fn a_sentinel_url_needs_its_master_name_and_only_it_has_one() {
    let sentinel = "sentinel://:pw@s1:26379;sentinel://s2:26379/2";
    let (setting, reason) = refusal(&ServerArgs {
        redis_url: Some(sentinel.into()),
        ..args()
    });
    assert_eq!(setting, "redis.master_name", "{reason}");
    let config = NodeConfig::resolve(&ServerArgs {
        redis_url: Some(sentinel.into()),
        redis_master_name: Some("mymaster".into()),
        redis_min_replicas: Some(1),
        ..args()
    })
    .unwrap();
    assert_eq!(config.redis.master_name.as_deref(), Some("mymaster"));
    assert_eq!(config.redis.min_replicas, 1);
    let (setting, _) = refusal(&ServerArgs {
        redis_url: Some("redis://r:6379/0".into()),
        redis_master_name: Some("mymaster".into()),
        ..args()
    });
    assert_eq!(setting, "redis.master_name");
    let (setting, _) = refusal(&ServerArgs {
        redis_url: Some("sentinel://s1:26379;redis://r:6379".into()),
        redis_master_name: Some("mymaster".into()),
        ..args()
    });
    assert_eq!(setting, "redis_url");
}

#[test]
fn the_replica_wait_fits_inside_a_push() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("belfry.toml");
    for (ms, ok) in [(0, false), (1, true), (4_999, true), (5_000, false)] {
        std::fs::write(
            &path,
            format!("[redis]\nmin_replicas = 1\nreplica_timeout_ms = {ms}\n"),
        )
        .unwrap();
        let resolved = NodeConfig::resolve(&ServerArgs {
            config: Some(path.clone()),
            ..args()
        });
        match resolved {
            Ok(config) => {
                assert!(ok, "{ms} ms was accepted");
                assert_eq!(config.redis.replica_timeout, Duration::from_millis(ms));
            }
            Err(ConfigError::Invalid { setting, .. }) => {
                assert!(!ok, "{ms} ms was refused");
                assert_eq!(setting, "redis.replica_timeout_ms");
            }
            Err(other) => panic!("{other}"),
        }
    }
}

#[test]
fn the_result_backend_is_optional_and_checked() {
    assert!(NodeConfig::resolve(&args()).unwrap().results.is_none());
    let config = NodeConfig::resolve(&ServerArgs {
        result_backend: Some("redis://r:6379/1".into()),
        ..args()
    })
    .unwrap();
    let results = config.results.expect("a result backend");
    assert_eq!(results.backend.url, "redis://r:6379/1");
    assert_eq!(results.horizon, Duration::from_secs(6 * 3600));
    let (setting, _) = refusal(&ServerArgs {
        result_backend: Some("http://nope".into()),
        ..args()
    });
    assert_eq!(setting, "results.backend");
    let (setting, reason) = refusal(&ServerArgs {
        result_backend: Some("sentinel://s1:26379".into()),
        ..args()
    });
    assert_eq!(setting, "results.master_name", "{reason}");
}
