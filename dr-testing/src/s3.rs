//! A real S3-compatible server (moto, from PyPI) on 127.0.0.1 with a random port, stopped
//! by PID when dropped. moto makes `PutMode::Create` atomic, which manifests rely on.
//! [`S3Server::start_tls`] serves HTTPS with a certificate of a throwaway CA ([`TlsCertificates`]).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tls::TlsCertificates;

/// Where .ci/run installs moto.
pub const MOTO_VENV: &str = ".cache/dr-moto";

/// A running moto server with one bucket.
pub struct S3Server {
    child: Child,
    port: u16,
    bucket: String,
    tls: Option<TlsCertificates>,
}

impl S3Server {
    /// Starts moto and creates the bucket `dr-test`. Panics with an install instruction when
    /// moto is missing.
    pub fn start() -> S3Server {
        S3Server::start_with(None)
    }

    /// Starts moto serving HTTPS with a server certificate (for `127.0.0.1` and `localhost`)
    /// of a new throwaway CA, and creates the bucket `dr-test`: a client reaches it only
    /// when it trusts [`S3Server::ca_file`]. Panics with an install instruction when moto,
    /// openssl or curl is missing.
    pub fn start_tls() -> S3Server {
        S3Server::start_with(Some(TlsCertificates::generate()))
    }

    /// Starts moto enforcing IAM: creates the bucket `dr-test` and one IAM user per
    /// `(name, policy JSON)` with an access key, then every request must be signed by one of
    /// those users and is allowed only as their policy says (the `testing` key stops working).
    /// Returns the server and each user's `(access key id, secret)`, in order.
    pub fn start_enforcing_iam(users: &[(&str, &str)]) -> (S3Server, Vec<(String, String)>) {
        let server = S3Server::start_with_env(None, &[("INITIAL_NO_AUTH_ACTION_COUNT", "100")]);
        let input = serde_json::to_string(users).expect("users as JSON");
        let out = crate::fidelity::buckets::run_boto3_script(
            &server,
            IAM_SETUP,
            "setup",
            &server.bucket,
            "",
            &input,
        );
        let keys: Vec<(String, String)> = serde_json::from_str(&out).expect("keys from setup");
        (server, keys)
    }

    /// object_store options that reach this server as the user with this access key.
    pub fn options_as(&self, key_id: &str, secret: &str) -> Vec<(&'static str, String)> {
        let mut options = self.options();
        for (name, value) in &mut options {
            match *name {
                "aws_access_key_id" => *value = key_id.to_owned(),
                "aws_secret_access_key" => *value = secret.to_owned(),
                _ => {}
            }
        }
        options
    }

    fn start_with(tls: Option<TlsCertificates>) -> S3Server {
        S3Server::start_with_env(tls, &[])
    }

    fn start_with_env(tls: Option<TlsCertificates>, env: &[(&str, &str)]) -> S3Server {
        let binary = moto_binary();
        let port = free_port();
        let mut command = Command::new(&binary);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        command.envs(env.iter().copied());
        if let Some(ca) = &tls {
            command.arg("--ssl-cert").arg(ca.server().0);
            command.arg("--ssl-key").arg(ca.server().1);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let server = S3Server {
            child,
            port,
            bucket: "dr-test".into(),
            tls,
        };
        server.wait_until_ready();
        match &server.tls {
            None => server.create_bucket(),
            Some(ca) => server.create_bucket_over_tls(&ca.ca()),
        }
        server
    }

    /// The CA certificate (PEM) a client must trust to reach a server of
    /// [`S3Server::start_tls`]; `None` for a plain HTTP server.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(TlsCertificates::ca)
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a TLS server.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `s3://dr-test/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// object_store options that reach this server (a TLS server also needs its CA trusted:
    /// [`S3Server::ca_file`]).
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint()),
            ("aws_allow_http", self.tls.is_none().to_string()),
            ("aws_region", "us-east-1".into()),
            ("aws_access_key_id", "testing".into()),
            ("aws_secret_access_key", "testing".into()),
            ("aws_virtual_hosted_style_request", "false".into()),
        ]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "moto did not start listening on 127.0.0.1:{} within 60 s",
            self.port
        );
    }

    fn create_bucket(&self) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        let request = format!(
            "PUT /{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.bucket, self.port
        );
        stream
            .write_all(request.as_bytes())
            .expect("send create-bucket");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read create-bucket reply");
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "moto refused to create the bucket: {response}"
        );
    }
}

impl S3Server {
    fn create_bucket_over_tls(&self, ca: &std::path::Path) {
        let url = format!("{}/{}", self.endpoint(), self.bucket);
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "PUT",
                "--cacert",
            ])
            .arg(ca)
            .arg(&url)
            .output()
            .unwrap_or_else(|e| panic!("curl is not installed ({e}): apt-get install curl"));
        let code = String::from_utf8_lossy(&out.stdout);
        assert!(
            code == "200",
            "moto refused to create the bucket over TLS ({code}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DR_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let candidate = PathBuf::from(home).join(MOTO_VENV).join("bin/moto_server");
        if candidate.is_file() {
            return candidate;
        }
    }
    crate::which("moto_server").unwrap_or_else(|| {
        panic!(
            "moto_server (the S3-compatible test server) is not installed: run \
             `python3 -m venv ~/{MOTO_VENV} && ~/{MOTO_VENV}/bin/pip install 'moto[server]'` (bash .ci/run does this)"
        )
    })
}

/// Creates the IAM users with their inline policies and keys, then spends moto's remaining
/// unauthenticated requests until it refuses the `testing` key (so enforcement is on when the
/// test starts, however many requests moto counted so far).
const IAM_SETUP: &str = r#"
import boto3, json, sys
endpoint, cmd, bucket, prefix = sys.argv[1:5]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
iam = boto3.client("iam", **kw)
keys = []
for name, policy in json.load(sys.stdin):
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    keys.append([key["AccessKeyId"], key["SecretAccessKey"]])
s3 = boto3.client("s3", **kw)
for _ in range(200):
    try:
        s3.list_buckets()
    except Exception:
        break
else:
    sys.exit("moto never started enforcing IAM")
json.dump(keys, sys.stdout)
"#;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}
