use super::args::parse_expiration;
use super::*;
use clap::Parser;

/// `serve` with `extra`, and `--auth kubernetes` unless `extra` chooses how
/// callers are checked (gitfaas refuses to start without a choice).
fn args(extra: &[&str]) -> ServeArgs {
    let mut argv = vec!["gitfaas", "serve"];
    argv.extend_from_slice(extra);
    if !extra
        .iter()
        .any(|a| *a == "--auth" || *a == "--api-token-file")
    {
        argv.extend_from_slice(&["--auth", "kubernetes"]);
    }
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Serve(a) => *a,
        _ => panic!("not serve"),
    }
}

#[test]
fn python_polling_interval_is_in_minutes_and_the_flag_wins() {
    let s = args(&["--dir", "."])
        .validate(|k| (k == "POLLING_INTERVAL").then(|| "2".to_string()))
        .expect("valid");
    assert_eq!(s.poll_interval, Duration::from_secs(120));
    let s = args(&["--dir", ".", "--poll-interval", "5s"])
        .validate(|k| (k == "POLLING_INTERVAL").then(|| "2".to_string()))
        .expect("valid");
    assert_eq!(s.poll_interval, Duration::from_secs(5));
    let e =
        args(&["--dir", "."]).validate(|k| (k == "POLLING_INTERVAL").then(|| "soon".to_string()));
    assert!(e.is_err());
}

#[test]
fn a_polling_interval_out_of_range_is_an_error_not_a_panic() {
    let polling = |v: &'static str| {
        args(&["--dir", "."]).validate(move |k| (k == "POLLING_INTERVAL").then(|| v.into()))
    };
    // 1e300 minutes is past u64::MAX seconds: Duration::from_secs_f64 panicked.
    for bad in [
        "1e300", "1e20", "10081", "inf", "-inf", "NaN", "-1", "0", "1e-300", "0.001",
    ] {
        let e = polling(bad)
            .err()
            .unwrap_or_else(|| panic!("{bad} refused"));
        let message = e.to_string();
        assert!(
            message.contains(&format!("POLLING_INTERVAL={bad}"))
                && message.contains("from 1/60 (1 s) to 10080 (7 days)"),
            "{message}"
        );
    }
    for (good, secs) in [("0.5", 30), ("1", 60), ("10080", 604_800)] {
        let s = polling(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(s.poll_interval, Duration::from_secs(secs), "{good}");
    }
    let s = polling(" 0.0167 ").expect("just over 1 s");
    assert!(s.poll_interval >= Duration::from_secs(1));
    // The flag has the same bounds.
    assert!(args(&["--dir", ".", "--poll-interval", "7d"])
        .validate(|_| None)
        .is_ok());
    for bad in ["8d", "500ms", "10000000years"] {
        let e = args(&["--dir", ".", "--poll-interval", bad])
            .validate(|_| None)
            .err()
            .unwrap_or_else(|| panic!("{bad} refused"));
        assert!(e.to_string().contains("from 1s to 7d"), "{e}");
    }
}

#[test]
fn a_source_is_required_and_the_token_needs_a_user() {
    assert!(args(&[]).validate(|_| None).is_err());
    let e = args(&["--git-url", "https://h/r.git", "--git-token", "t"]).validate(|_| None);
    assert!(e.is_err_and(|e| e.to_string().contains("--git-user")));
}

#[test]
fn the_git_timeout_defaults_to_a_minute_and_is_bounded() {
    let git = |extra: &[&str]| {
        let mut argv = vec!["--git-url", "https://h/r.git"];
        argv.extend_from_slice(extra);
        args(&argv).validate(|_| None)
    };
    let timeout = |s: &Settings| match &s.source {
        SourceSettings::Git(g) => g.timeout,
        SourceSettings::Dir(_) => panic!("a git source"),
    };
    assert_eq!(timeout(&git(&[]).expect("valid")), Duration::from_secs(60));
    assert_eq!(
        timeout(&git(&["--git-timeout", "5s"]).expect("valid")),
        Duration::from_secs(5)
    );
    for bad in ["0s", "500ms", "2h"] {
        let e = git(&["--git-timeout", bad])
            .err()
            .unwrap_or_else(|| panic!("{bad} refused"));
        assert!(
            e.to_string()
                .contains("--git-timeout (GITFAAS_GIT_TIMEOUT) must be from 1s to 1h"),
            "{e}"
        );
    }
}

#[test]
fn the_public_url_is_derived_from_the_listen_address_unless_given() {
    let s = args(&["--dir", ".", "--listen", "0.0.0.0:5000"])
        .validate(|_| None)
        .expect("valid");
    assert_eq!(s.public_url, "http://127.0.0.1:5000");
    assert!(s.public_url_from_listen);
    let s = args(&["--dir", ".", "--public-url", "https://faas.example/"])
        .validate(|_| None)
        .expect("valid");
    assert_eq!(s.public_url, "https://faas.example");
    assert!(!s.public_url_from_listen);
    let at = |a: &str| derived_public_url(a.parse().expect("address"));
    assert_eq!(at("10.1.2.3:8080"), "http://10.1.2.3:8080");
    assert_eq!(at("[::1]:5000"), "http://[::1]:5000");
    assert_eq!(at("[::]:5000"), "http://127.0.0.1:5000");
}

#[test]
fn urls_are_redacted_for_logs() {
    assert_eq!(
        redact_url("https://u:tok@host/r.git"),
        "https://***@host/r.git"
    );
    assert_eq!(redact_url("https://host/a@b"), "https://host/a@b");
    assert_eq!(redact_url("git@host:r.git"), "git@host:r.git");
}

#[test]
fn banned_kinds_default_to_the_python_list() {
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    let role = serde_json::json!({"kind": "Role"});
    assert!(s.policy.check(&role, None).is_err());
    let s = args(&["--dir", ".", "--banned-kinds", "Secret,ConfigMap"])
        .validate(|_| None)
        .expect("valid");
    assert!(s.policy.check(&role, None).is_ok());
    assert_eq!(s.public_url, "http://127.0.0.1:5000");
}

#[test]
fn expiration_accepts_python_seconds_and_durations() {
    assert_eq!(parse_expiration("172800"), Ok(Duration::from_secs(172800)));
    assert_eq!(parse_expiration("2d"), Ok(Duration::from_secs(172800)));
    assert!(parse_expiration("soon").is_err());
    let s = args(&["--dir", ".", "--redis-url", "redis://127.0.0.1:6379"])
        .validate(|_| None)
        .expect("valid");
    assert!(matches!(s.store, StoreSettings::Redis(_)));
    assert!(args(&["--dir", ".", "--redis-url", "http://x"])
        .validate(|_| None)
        .is_err());
}

#[test]
fn an_expiration_time_beyond_ten_years_is_refused_at_start() {
    // Near u64::MAX seconds, `now + ttl` overflowed in the store.
    for bad in [
        "18446744073709551615",
        "18446744073709551000",
        "3651d",
        "100years",
    ] {
        let e = args(&["--dir", ".", "--expiration-time", bad])
            .validate(|_| None)
            .err()
            .unwrap_or_else(|| panic!("{bad} refused"));
        assert!(
            e.to_string().contains(
                "--expiration-time (EXPIRATION_TIME) must be from 60s to 3650d (10 years)"
            ),
            "{e}"
        );
    }
    let s = args(&["--dir", ".", "--expiration-time", "3650d"])
        .validate(|_| None)
        .expect("ten years is allowed");
    assert_eq!(s.expiration, Duration::from_secs(3650 * 86400));
}

#[test]
fn banned_kinds_are_read_space_or_comma_separated_and_unknown_ones_refused() {
    let python = "Role RoleBinding ClusterRole ClusterRoleBinding ServiceAccount Ingress Service";
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    let sa = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount"});
    assert!(s.policy.check(&sa, None).is_err());
    for list in [
        python,
        "Role,ServiceAccount",
        "Role, ServiceAccount",
        " ServiceAccount\t",
    ] {
        let s = args(&["--dir", ".", "--banned-kinds", list])
            .validate(|_| None)
            .expect(list);
        assert!(
            s.policy.check(&sa, None).is_err(),
            "{list:?} bans ServiceAccount"
        );
    }
    let e = args(&["--dir", ".", "--banned-kinds", "Role Services"])
        .validate(|_| None)
        .err()
        .expect("Services is not a kind");
    assert!(e.to_string().contains("`Services`"), "{e}");
    assert!(e.to_string().contains("did you mean Service?"), "{e}");
    // A custom resource, by kind and group.
    let s = args(&["--dir", ".", "--banned-kinds", "Workflow.argoproj.io"])
        .validate(|_| None)
        .expect("a CRD kind");
    let wf = serde_json::json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow"});
    let other = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Workflow"});
    assert!(s.policy.check(&wf, None).is_err());
    assert!(s.policy.check(&other, None).is_ok());
}

#[test]
fn the_pod_security_level_and_its_waivers_are_read() {
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    assert_eq!(s.policy.pod_security.level, Level::Baseline, "the default");
    assert_eq!(s.policy.pod_security.waivers, Waivers::default());
    let s = args(&[
        "--dir",
        ".",
        "--pod-security",
        "restricted",
        "--allow-privileged",
    ])
    .validate(|_| None)
    .expect("valid");
    assert_eq!(s.policy.pod_security.level, Level::Restricted);
    assert!(s.policy.pod_security.waivers.privileged);
    assert!(!s.policy.pod_security.waivers.host_path);
    let s = args(&["--dir", ".", "--pod-security", "privileged"])
        .validate(|_| None)
        .expect("valid");
    assert_eq!(s.policy.pod_security.level, Level::Privileged);
    assert!(
        Cli::try_parse_from(["gitfaas", "serve", "--dir", ".", "--pod-security", "strict"])
            .is_err()
    );
}

#[test]
fn cluster_power_kinds_to_allow_are_read_and_checked() {
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    assert!(s.policy.allowed_kinds.is_empty());
    let s = args(&[
        "--dir",
        ".",
        "--allow-kinds",
        "Namespace,Secret/service-account-token",
    ])
    .validate(|_| None)
    .expect("valid");
    assert_eq!(s.policy.allowed_kinds.len(), 2);
    let e = args(&["--dir", ".", "--allow-kinds", "Role"])
        .validate(|_| None)
        .err()
        .expect("Role is not a cluster-power kind");
    assert!(
        e.to_string()
            .starts_with("--allow-kinds (GITFAAS_ALLOW_KINDS): `Role`"),
        "{e}"
    );
}

#[test]
fn allowed_secrets_are_names_or_prefixes() {
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    assert!(
        s.policy.allowed_secrets.is_empty(),
        "only the payload Secret"
    );
    let s = args(&["--dir", ".", "--allowed-secrets", "db-creds, shared-*,"])
        .validate(|_| None)
        .expect("valid");
    assert_eq!(
        s.policy
            .allowed_secrets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["db-creds", "shared-*"]
    );
    let e = args(&["--dir", ".", "--allowed-secrets", "ns/db"])
        .validate(|_| None)
        .err()
        .expect("not a name");
    assert!(
        e.to_string().starts_with(
            "--allowed-secrets (GITFAAS_ALLOWED_SECRETS): `ns/db` is not a Secret name"
        ),
        "{e}"
    );
}

#[test]
fn allowed_service_accounts_are_names() {
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    assert!(s.policy.allowed_service_accounts.is_empty(), "only default");
    let s = args(&[
        "--dir",
        ".",
        "--allowed-service-accounts",
        "builder, uploader,",
    ])
    .validate(|_| None)
    .expect("valid");
    assert_eq!(
        s.policy.allowed_service_accounts.iter().collect::<Vec<_>>(),
        ["builder", "uploader"]
    );
    let e = args(&["--dir", ".", "--allowed-service-accounts", "ns/builder"])
        .validate(|_| None)
        .err()
        .expect("not a name");
    assert!(
        e.to_string()
            .contains("`ns/builder` is not a service account name"),
        "{e}"
    );
}

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn the_python_ssh_settings_keep_their_meaning() {
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(home.path().join(".ssh")).expect("mkdir");
    std::fs::write(home.path().join(".ssh/id_rsa"), "key").expect("key");
    std::fs::write(home.path().join(".ssh/known_hosts"), "hosts").expect("hosts");
    let home_dir = home.path().display().to_string();
    let env = |pairs: Vec<(&'static str, String)>| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    };
    let ssh = ["--git-url", "git@github.com:you/functions.git"];
    let s = args(&ssh)
        .validate(env(vec![
            ("GIT_USE_SSH_KEY", "yes".into()),
            ("HOME", home_dir.clone()),
            ("GIT_STRICT_HOST_KEY_CHECKING", "yes".into()),
        ]))
        .expect("valid");
    let SourceSettings::Git(git) = &s.source else {
        panic!("a git source")
    };
    assert_eq!(
        git.ssh_key.as_deref(),
        Some(home.path().join(".ssh/id_rsa").as_path())
    );
    assert_eq!(
        git.known_hosts.as_deref(),
        Some(home.path().join(".ssh/known_hosts").as_path())
    );
    assert!(!git.insecure_skip_host_key_check);
    assert_eq!(s.warnings, [UNSIGNED_CALLBACKS]);

    // `no` accepts any host key, as it did there, and says so at start.
    let s = args(&ssh)
        .validate(env(vec![
            ("GIT_USE_SSH_KEY", "yes".into()),
            ("HOME", home_dir.clone()),
            ("GIT_STRICT_HOST_KEY_CHECKING", "no".into()),
        ]))
        .expect("valid");
    let SourceSettings::Git(git) = &s.source else {
        panic!("a git source")
    };
    assert!(git.insecure_skip_host_key_check);
    assert!(s.warnings[0].contains("not verified"), "{:?}", s.warnings);

    // No key where the Python chart mounts it: an error that says where.
    let empty = tempfile::tempdir().expect("empty home");
    let e = args(&ssh)
        .validate(env(vec![
            ("GIT_USE_SSH_KEY", "yes".into()),
            ("HOME", empty.path().display().to_string()),
        ]))
        .err()
        .expect("no key");
    assert!(e.to_string().contains("GITFAAS_SSH_KEY"), "{e}");
    // ssh with an https URL, or a value that means nothing, stops the start.
    assert!(args(&["--git-url", "https://h/r.git"])
        .validate(env_of(&[("GIT_USE_SSH_KEY", "yes")]))
        .is_err());
    assert!(args(&ssh)
        .validate(env_of(&[("GIT_STRICT_HOST_KEY_CHECKING", "maybe")]))
        .is_err());
    // `no` (the chart's default) keeps the token.
    let s = args(&[
        "--git-url",
        "https://h/r.git",
        "--git-user",
        "u",
        "--git-token",
        "t",
    ])
    .validate(env_of(&[("GIT_USE_SSH_KEY", "no")]))
    .expect("valid");
    let SourceSettings::Git(git) = &s.source else {
        panic!("a git source")
    };
    assert!(git.token.is_some());
}

#[test]
fn secrets_come_from_files() {
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-from-file\n").expect("write");
    let path = token.display().to_string();
    let s = args(&[
        "--git-url",
        "https://h/r.git",
        "--git-user",
        "u",
        "--git-token-file",
        &path,
    ])
    .validate(|_| None)
    .expect("valid");
    let SourceSettings::Git(git) = &s.source else {
        panic!("a git source")
    };
    use secrecy::ExposeSecret;
    assert_eq!(
        git.token
            .as_ref()
            .map(|t| t.expose_secret().to_string())
            .as_deref(),
        Some("tok-from-file")
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    assert!(args(&[
        "--git-url",
        "https://h/r.git",
        "--git-user",
        "u",
        "--git-token-file",
        &empty.display().to_string()
    ])
    .validate(|_| None)
    .is_err());
}

/// `serve`'s flags as the binary reads them: noting which came from the
/// command line.
fn from_command_line(extra: &[&str]) -> ServeArgs {
    let mut argv = vec!["gitfaas", "serve", "--auth", "kubernetes"];
    argv.extend_from_slice(extra);
    match parse_command_line(argv).expect("parses").command {
        Command::Serve(a) => *a,
        _ => panic!("not serve"),
    }
}

#[test]
fn a_secret_given_as_a_flag_is_refused_unless_allowed() {
    let git = ["--git-url", "https://h/r.git", "--git-user", "u"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        git.iter().chain(extra).copied().collect()
    };
    let e = from_command_line(&with(&["--git-token", "tok-123"]))
        .validate(|_| None)
        .err()
        .expect("--git-token refused");
    let message = e.to_string();
    for part in [
        "--git-token was given on the command line",
        "/proc/<pid>/cmdline",
        "GIT_PERSONAL_TOKEN",
        "--git-token-file",
        "--allow-secret-flags",
    ] {
        assert!(message.contains(part), "`{part}` in: {message}");
    }
    assert!(
        !message.contains("tok-123"),
        "the secret is not repeated: {message}"
    );
    // `--git-token=…` is the same flag.
    assert!(from_command_line(&with(&["--git-token=tok-123"]))
        .validate(|_| None)
        .is_err());
    // Allowed: it works, and start-up warns.
    let s = from_command_line(&with(&["--git-token", "tok-123", "--allow-secret-flags"]))
        .validate(|_| None)
        .expect("allowed");
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("--git-token was given") && w.contains("--git-token-file")),
        "{:?}",
        s.warnings
    );

    // A Redis URL is refused only with a password in it.
    let redis =
        |url: &str| from_command_line(&["--dir", ".", "--redis-url", url]).validate(|_| None);
    assert!(redis("redis://127.0.0.1:6379/2").is_ok());
    assert!(
        redis("redis://default@127.0.0.1:6379").is_ok(),
        "a user name alone"
    );
    for with_password in [
        "redis://:pw@127.0.0.1:6379",
        "rediss://default:pw@h:6380/1",
        "unix:///run/redis.sock?db=1&pass=pw",
    ] {
        let e = redis(with_password).err().expect("refused");
        assert!(
            e.to_string().contains("--redis-url with a password in it")
                && e.to_string().contains("--redis-url-file")
                && !e.to_string().contains("pw@"),
            "{e}"
        );
    }
    // A git URL with credentials in it, likewise; an ssh user is none.
    let url = |u: &str| from_command_line(&["--git-url", u]).validate(|_| None);
    assert!(url("https://alice:s3cr3t@h/r.git").is_err());
    assert!(url("https://ghp_token@github.com/o/r.git").is_err());
    assert!(url("https://h/r.git").is_ok());
    assert!(url("ssh://git@h/r.git").is_ok());
    assert!(url("git@h:o/r.git").is_ok());

    // Parsed without noting where values came from (as the tests above do),
    // nothing is refused; validate and render check too.
    assert!(args(&with(&["--git-token", "t"]))
        .validate(|_| None)
        .is_ok());
    let Command::Validate(v) =
        parse_command_line(["gitfaas", "validate", "--dir", ".", "--git-token", "t"])
            .expect("parses")
            .command
    else {
        panic!("not validate")
    };
    assert!(v.source.on_command_line.git_token);
    assert!(v.source.secret_flags(None).is_err());
    assert!(v.source.resolve().is_err(), "validate refuses it too");
}

#[test]
fn callback_flags_are_validated_at_start() {
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    assert!(!s.callbacks.targets.allow_http);
    assert!(s.callbacks.targets.allowed.is_empty());
    assert_eq!(s.callbacks.max_in_flight, 64);
    assert_eq!(s.callbacks.max_wait, Duration::from_secs(3600));
    assert!(s.callbacks.signing.is_none());
    assert_eq!(
        s.warnings,
        [UNSIGNED_CALLBACKS],
        "unsigned callbacks are warned about"
    );
    let s = args(&[
        "--dir",
        ".",
        "--callback-allow-http",
        "--callback-allowed-hosts",
        "127.0.0.1, hooks.internal",
        "--expiration-time",
        "10m",
    ])
    .validate(|_| None)
    .expect("valid");
    assert!(s.callbacks.targets.allow_http);
    assert!(s.callbacks.targets.check("http://127.0.0.1:1/").is_ok());
    assert_eq!(
        s.callbacks.max_wait,
        Duration::from_secs(600),
        "capped by the expiration"
    );
    assert!(s.warnings[0].contains("plain http"), "{:?}", s.warnings);
    for bad in [
        &["--callback-allowed-hosts", "*.internal"][..],
        &["--max-callbacks-in-flight", "0"],
        &["--callback-max-wait", "0s"],
    ] {
        let mut argv = vec!["--dir", "."];
        argv.extend_from_slice(bad);
        let e = args(&argv).validate(|_| None).err().expect("refused");
        assert!(e.to_string().contains(bad[0]), "{e}");
    }
}

#[test]
fn the_callback_signing_secret_is_read_and_checked_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let with = |text: &str| {
        let file = dir.path().join("signing");
        std::fs::write(&file, text).expect("write");
        args(&[
            "--dir",
            ".",
            "--callback-signing-secret-file",
            &file.display().to_string(),
        ])
        .validate(|_| None)
    };
    // The specification's example key; a trailing newline is fine.
    let s = with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").expect("valid");
    let signing = s.callbacks.signing.as_ref().expect("signing");
    assert_eq!(
        signing.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    for (text, says) in [
        ("", "holds no key"),
        ("s3cret-but-not-whsec\n", "does not start with `whsec_`"),
        ("whsec_!!!!\n", "not standard base64"),
        ("whsec_c2hvcnQ=\n", "the key is 5 bytes"),
    ] {
        let e = with(text).err().expect("refused").to_string();
        assert!(
            e.contains("--callback-signing-secret-file") && e.contains(says),
            "{text:?}: {e}"
        );
        assert!(!e.contains("s3cret"), "the file is not quoted: {e}");
    }
    let missing = args(&[
        "--dir",
        ".",
        "--callback-signing-secret-file",
        "/nonexistent/signing",
    ])
    .validate(|_| None)
    .err()
    .expect("unreadable");
    assert!(
        missing.to_string().contains("/nonexistent/signing"),
        "{missing}"
    );
}

#[test]
fn the_python_redis_password_reaches_the_redis_url() {
    use secrecy::ExposeSecret;
    let url = |s: &Settings| match &s.store {
        StoreSettings::Redis(u) => u.expose_secret().to_string(),
        StoreSettings::Embedded(_) => "embedded".into(),
    };
    let s = args(&["--dir", "."])
        .validate(env_of(&[("REDIS_PASSWORD", "p@ss word")]))
        .expect("valid");
    assert_eq!(
        url(&s),
        "redis://:p%40ss%20word@gitfaas-redis-master:6379/0"
    );
    let s = args(&["--dir", ".", "--redis-url", "redis://127.0.0.1:6379/2"])
        .validate(env_of(&[("REDIS_PASSWORD", "secret")]))
        .expect("valid");
    assert_eq!(url(&s), "redis://:secret@127.0.0.1:6379/2");
    let s = args(&["--dir", ".", "--redis-url", "redis://default:secret@h:6379"])
        .validate(env_of(&[("REDIS_PASSWORD", "secret")]))
        .expect("the same password twice");
    assert_eq!(url(&s), "redis://default:secret@h:6379");
    assert!(
        args(&["--dir", ".", "--redis-url", "redis://:other@h:6379"])
            .validate(env_of(&[("REDIS_PASSWORD", "secret")]))
            .is_err()
    );
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    assert_eq!(url(&s), "embedded");
}

#[test]
fn the_log_archive_is_bounded_and_may_be_off() {
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    assert_eq!(s.limits.log_archive_bytes, 64 * 1024);
    let s = args(&["--dir", ".", "--log-archive-bytes", "0"])
        .validate(|_| None)
        .expect("off");
    assert_eq!(s.limits.log_archive_bytes, 0);
    let e = args(&["--dir", ".", "--log-archive-bytes", "1048577"])
        .validate(|_| None)
        .err()
        .expect("beyond 1 MiB");
    assert!(e.to_string().contains("--log-archive-bytes"), "{e}");
}

#[test]
fn the_callback_lease_is_from_a_second_to_an_hour() {
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    assert_eq!(s.callbacks.lease, Duration::from_secs(30));
    for bad in ["0s", "500ms", "2h"] {
        let e = args(&["--dir", ".", "--callback-lease", bad])
            .validate(|_| None)
            .err()
            .unwrap_or_else(|| panic!("{bad} refused"));
        assert!(e.to_string().contains("--callback-lease"), "{e}");
    }
}

#[test]
fn the_dispatch_lease_is_from_a_second_to_an_hour() {
    let s = args(&["--dir", "."]).validate(|_| None).expect("valid");
    assert_eq!(s.limits.dispatch_lease, Duration::from_secs(30));
    for bad in ["0s", "500ms", "2h"] {
        let e = args(&["--dir", ".", "--dispatch-lease", bad])
            .validate(|_| None)
            .err()
            .unwrap_or_else(|| panic!("{bad} refused"));
        assert!(e.to_string().contains("--dispatch-lease"), "{e}");
    }
}

#[test]
fn auth_is_chosen_explicitly_or_by_a_token_file() {
    let unset = Cli::try_parse_from(["gitfaas", "serve", "--dir", "."]).expect("parses");
    let Command::Serve(unset) = unset.command else {
        panic!("not serve")
    };
    let e = unset
        .validate(|_| None)
        .err()
        .expect("no --auth and no token file: refused");
    assert!(
        e.to_string().contains("--auth") && e.to_string().contains("GITFAAS_AUTH=none"),
        "{e}"
    );
    let s = args(&["--dir", ".", "--api-token-file", "/t"])
        .validate(|_| None)
        .expect("valid");
    assert!(
        s.auth.tokens && !s.auth.kubernetes,
        "a token file alone: tokens"
    );
    let s = args(&["--dir", ".", "--auth", "kubernetes"])
        .validate(|_| None)
        .expect("valid");
    assert!(s.auth.kubernetes && !s.auth.tokens);
    assert_eq!(s.auth.token_audience, "gitfaas");
    assert!(!s.warnings.iter().any(|w| w.contains("OPEN")));
    let s = args(&[
        "--dir",
        ".",
        "--auth",
        "kubernetes, tokens",
        "--api-token-file",
        "/t",
        "--token-audience",
        "pipelines",
    ])
    .validate(|_| None)
    .expect("valid");
    assert!(s.auth.kubernetes && s.auth.tokens);
    assert_eq!(s.auth.token_audience, "pipelines");
    let s = args(&["--dir", ".", "--auth", "none"])
        .validate(|_| None)
        .expect("valid");
    assert!(s.auth.is_open() && s.warnings.iter().any(|w| w.contains("OPEN")));
    for (bad, says) in [
        (vec!["--auth", "kerberos"], "kerberos"),
        (vec!["--auth", "none,kubernetes"], "none"),
        (vec!["--auth", "tokens"], "--api-token-file"),
        (
            vec!["--auth", "kubernetes", "--api-token-file", "/t"],
            "does not use it",
        ),
        (vec!["--token-audience", " "], "--token-audience"),
    ] {
        let mut a = vec!["--dir", "."];
        a.extend(bad);
        let e = args(&a).validate(|_| None).err().expect("refused");
        assert!(e.to_string().contains(says), "{e}");
    }
}
