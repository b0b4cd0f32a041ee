//! The daemon's HTTP endpoint (axum): `GET /metrics` computes the status and answers in the
//! OpenMetrics text format (the same text as `dr status --prometheus`), `GET /healthz`
//! answers 200 while the scheduling loop turns and the last status gathering succeeded,
//! 503 otherwise, with the facts as JSON. It stops when the daemon does (SIGTERM, SIGINT).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::exit::{CliError, CliResult};

/// How often the scheduling loop turns at least (and so stamps its heartbeat).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A loop whose last turn is older than this is reported as not alive.
const HEARTBEAT_STALE: Duration = Duration::from_secs(30);
/// The status is gathered at least this often (and at start, and on every scrape), so that
/// `/healthz` says whether the repository can still be read.
const STATUS_EVERY: Duration = Duration::from_secs(300);
/// How long a stopping daemon waits for scrapes in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the daemon's loop and status gatherings report to `/healthz`.
#[derive(Debug)]
pub struct Health {
    heartbeat: Mutex<Instant>,
    stopping: Mutex<bool>,
    last_status: Mutex<Option<Gathered>>,
}

/// The outcome of one status gathering.
#[derive(Debug, Clone)]
struct Gathered {
    at: DateTime<Utc>,
    error: Option<String>,
}

/// The body of `/healthz`.
#[derive(Debug, Serialize)]
struct HealthReport {
    /// `ok`, or `unhealthy`.
    status: &'static str,
    loop_alive: bool,
    loop_heartbeat_age_s: f64,
    stopping: bool,
    last_status_at: Option<DateTime<Utc>>,
    last_status_ok: bool,
    last_status_error: Option<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            heartbeat: Mutex::new(Instant::now()),
            stopping: Mutex::new(false),
            last_status: Mutex::new(None),
        }
    }
}

impl Health {
    /// The scheduling loop turned.
    pub fn beat(&self) {
        *lock(&self.heartbeat) = Instant::now();
    }

    /// The daemon stops scheduling (it may still be waiting for runs).
    pub fn stopping(&self) {
        *lock(&self.stopping) = true;
    }

    fn record(&self, outcome: &CliResult<String>) {
        let error = outcome.as_ref().err().map(|e| e.message.clone());
        if let Some(error) = &error {
            tracing::warn!("gathering the status failed: {error}");
        }
        *lock(&self.last_status) = Some(Gathered {
            at: Utc::now(),
            error,
        });
    }

    fn report(&self) -> HealthReport {
        let age = lock(&self.heartbeat).elapsed();
        let stopping = *lock(&self.stopping);
        let last = lock(&self.last_status).clone();
        let loop_alive = !stopping && age < HEARTBEAT_STALE;
        let last_status_ok = last.as_ref().is_some_and(|g| g.error.is_none());
        HealthReport {
            status: if loop_alive && last_status_ok {
                "ok"
            } else {
                "unhealthy"
            },
            loop_alive,
            loop_heartbeat_age_s: age.as_secs_f64(),
            stopping,
            last_status_at: last.as_ref().map(|g| g.at),
            last_status_ok,
            last_status_error: match last {
                None => Some("no status gathered yet".into()),
                Some(g) => g.error,
            },
        }
    }

    fn last_gathered(&self) -> Option<DateTime<Utc>> {
        lock(&self.last_status).as_ref().map(|g| g.at)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
struct Endpoint {
    app: Arc<App>,
    health: Arc<Health>,
}

/// The running endpoint: [`MetricsServer::shutdown`] stops it.
pub struct MetricsServer {
    stop: watch::Sender<bool>,
    served: JoinHandle<()>,
    refresher: JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `address` and serves until [`MetricsServer::shutdown`].
    ///
    /// # Errors
    /// A usage error when the address cannot be bound.
    pub async fn start(app: Arc<App>, health: Arc<Health>, address: &str) -> CliResult<Self> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| CliError::usage(format!("cannot listen on {address} for metrics: {e}")))?;
        tracing::info!("serving metrics at http://{address}/metrics, health at /healthz");
        let endpoint = Endpoint { app, health };
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .fallback(|| async { (StatusCode::NOT_FOUND, "GET /metrics or /healthz\n") })
            .with_state(endpoint.clone());
        let (stop, mut stopped) = watch::channel(false);
        let served = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!("the metrics endpoint failed: {e}");
            }
        });
        let refresher = tokio::spawn(refresh(endpoint));
        Ok(MetricsServer {
            stop,
            served,
            refresher,
        })
    }

    /// Stops accepting connections and waits (a few seconds at most) for scrapes in flight.
    pub async fn shutdown(mut self) {
        self.refresher.abort();
        let _ = self.stop.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.served)
            .await
            .is_err()
        {
            self.served.abort();
        }
    }
}

/// Gathers the status now, then whenever no gathering happened for [`STATUS_EVERY`].
async fn refresh(endpoint: Endpoint) {
    loop {
        let due = endpoint
            .health
            .last_gathered()
            .is_none_or(|at| (Utc::now() - at).to_std().unwrap_or(Duration::ZERO) >= STATUS_EVERY);
        if due {
            gather(&endpoint).await.ok();
        }
        tokio::time::sleep(STATUS_EVERY / 10).await;
    }
}

/// Computes the status as OpenMetrics text and records the outcome for `/healthz`.
async fn gather(endpoint: &Endpoint) -> CliResult<String> {
    let outcome = super::super::status::run(&endpoint.app)
        .await
        .map(|report| super::super::status::prometheus(&report));
    endpoint.health.record(&outcome);
    outcome
}

async fn metrics(State(endpoint): State<Endpoint>) -> Response {
    match gather(&endpoint).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                super::super::status::PROMETHEUS_CONTENT_TYPE,
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}\n", e.message),
        )
            .into_response(),
    }
}

async fn healthz(State(endpoint): State<Endpoint>) -> Response {
    let report = endpoint.health.report();
    let code = if report.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&report).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
