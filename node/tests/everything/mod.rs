//! The real `@modelcontextprotocol/server-everything` (npm, installed and cached by
//! `e2e/upstream/install.sh`) as a child process, for the `make e2e-upstream` tests
//! (`upstream.rs`, `upstream_bridge.rs`).

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// The real upstream process (killed on drop, so a failing test leaves nothing running).
pub struct Everything {
    child: std::process::Child,
}

impl Everything {
    /// Starts it on a free port; a few tries, since it listens on every address (`::`) and a
    /// port free when chosen may be taken by then (by another test's or a load generator's
    /// connections, which use ports of the same range).
    pub async fn start_anywhere() -> (u16, Self) {
        let mut last = String::new();
        for _ in 0..5 {
            // Free on every address, as the server will need it.
            let port = std::net::TcpListener::bind("[::]:0")
                .or_else(|_| std::net::TcpListener::bind("0.0.0.0:0"))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            match Self::try_start(port).await {
                Ok(me) => return (port, me),
                Err(e) => last = e,
            }
        }
        panic!("server-everything did not start in 5 tries: {last}");
    }

    /// Starts `server-everything` in its Streamable HTTP mode on `port` and waits (≤ 30 s)
    /// until it accepts connections.
    pub async fn start(port: u16) -> Self {
        Self::try_start(port)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_start(port: u16) -> Result<Self, String> {
        let node = std::env::var("MCPCLUSTER_NODE22")
            .expect("MCPCLUSTER_NODE22 unset: run `make e2e-upstream` (e2e/upstream/install.sh)");
        let entry = std::env::var("MCPCLUSTER_SERVER_EVERYTHING").expect(
            "MCPCLUSTER_SERVER_EVERYTHING unset: run `make e2e-upstream` (e2e/upstream/install.sh)",
        );
        let log = std::env::temp_dir().join(format!(
            "mcp-node-server-everything-{}-{port}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut child = std::process::Command::new(node)
            .arg(entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("server-everything starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = std::fs::remove_file(&log);
                return Err(format!(
                    "server-everything did not listen on {port} within 30 s ({exited:?}): {output}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = std::fs::remove_file(&log);
        Ok(Self { child })
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        self.kill();
    }
}
