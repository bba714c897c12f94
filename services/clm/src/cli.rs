//! Command-line arguments; every option has a `CLM_*` environment equivalent.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// clm: customer lifecycle management, as four gRPC services.
#[derive(Debug, Parser)]
#[command(name = "clm", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole suite in one process (embedded SQLite under --data-dir by default).
    Up(UpArgs),
    /// Run one service, for deployment.
    Serve(ServeArgs),
    /// Load a synthetic tenant (contacts, spend, a history of interactions) into a running
    /// suite; the same seed gives the same tenant.
    Demo(DemoArgs),
    /// Measure a running suite: a table of throughput and latency beside a baseline.
    Bench(BenchArgs),
    /// Issue a bearer token signed with the configured key (for operators and development).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Apply pending database migrations of every service, then exit.
    Migrate(StoreArgs),
    /// Show each outbox's backlog: undelivered events and the age of the oldest.
    Outbox(StoreArgs),
    /// List the suite's gRPC services and methods, or write their descriptor set (for
    /// gateways such as Envoy's gRPC-JSON transcoder, and tools such as grpcurl).
    Describe {
        /// Write the encoded FileDescriptorSet, imports included, to this file.
        #[arg(long, value_name = "FILE")]
        descriptor_set: Option<PathBuf>,
    },
    /// Manage contacts in a running suite.
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Record and list interactions in a running suite.
    #[command(subcommand)]
    Interactions(InteractionsCommand),
    /// Read lead scores from a running suite.
    #[command(subcommand)]
    Score(ScoreCommand),
    /// Inspect scoring models and simulate changes to them.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Read and move contacts' lifecycle stages.
    #[command(subcommand)]
    Stage(StageCommand),
    /// Create and read real-time segments.
    #[command(subcommand)]
    Segments(SegmentsCommand),
    /// Print a report.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Print lifecycle events as they happen (transitions, segment changes, actions).
    Watch {
        #[command(flatten)]
        client: ClientArgs,
        /// Resume after this cursor ("0": from the oldest event; default: from now).
        #[arg(long, default_value = "")]
        cursor: String,
        /// Only these kinds: transition, segment_entered, segment_exited, action (repeatable).
        #[arg(long = "kind")]
        kinds: Vec<String>,
    },
}

/// Where services keep their data.
#[derive(Debug, Args, Clone)]
pub(crate) struct StoreArgs {
    /// Data directory of the embedded default (one SQLite file per service).
    #[arg(long, env = "CLM_DATA_DIR", default_value = "./clm-data")]
    pub(crate) data_dir: PathBuf,
    /// PostgreSQL URL; each service keeps its tables in its own schema.
    #[arg(long, env = "CLM_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
}

/// Keys of bearer-token authentication; setting a verification key turns auth on.
#[derive(Debug, Args, Clone)]
pub(crate) struct AuthArgs {
    /// HS256 shared secret (at least 32 bytes): verifies and signs tokens.
    #[arg(long, env = "CLM_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,
    /// RS256 public key that verifies tokens: a PEM file or a JWKS (JSON) file.
    #[arg(long, env = "CLM_JWT_PUBLIC_KEY_FILE")]
    pub(crate) jwt_public_key_file: Option<PathBuf>,
    /// RS256 private key (PEM) that signs the services' own tokens and `clm token issue`.
    #[arg(long, env = "CLM_JWT_PRIVATE_KEY_FILE")]
    pub(crate) jwt_private_key_file: Option<PathBuf>,
    /// The `iss` tokens must carry.
    #[arg(long, env = "CLM_JWT_ISSUER", default_value = clm_runtime::auth::DEFAULT_ISSUER)]
    pub(crate) jwt_issuer: String,
    /// The `aud` tokens must carry.
    #[arg(long, env = "CLM_JWT_AUDIENCE", default_value = clm_runtime::auth::DEFAULT_AUDIENCE)]
    pub(crate) jwt_audience: String,
}

impl AuthArgs {
    pub(crate) fn settings(&self) -> clm_runtime::auth::AuthSettings {
        clm_runtime::auth::AuthSettings {
            secret: self.jwt_secret.clone(),
            public_key_file: self.jwt_public_key_file.clone(),
            private_key_file: self.jwt_private_key_file.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
        }
    }
}

/// TLS of servers and of the services' calls to each other.
#[derive(Debug, Args, Clone)]
pub(crate) struct TlsArgs {
    /// Certificate chain (PEM) served by this process, and shown to the services it calls.
    #[arg(long, env = "CLM_TLS_CERT_FILE", requires = "tls_key_file")]
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "CLM_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub(crate) tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, env = "CLM_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub(crate) tls_client_ca_file: Option<PathBuf>,
    /// CA that signs the other services' certificates (default: the client CA).
    #[arg(long, env = "CLM_TLS_CA_FILE")]
    pub(crate) tls_ca_file: Option<PathBuf>,
}

impl TlsArgs {
    pub(crate) fn files(&self) -> Option<clm_runtime::TlsFiles> {
        Some(clm_runtime::TlsFiles {
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
            client_ca: self.tls_client_ca_file.clone(),
            server_ca: self.tls_ca_file.clone(),
        })
    }
}

/// Options every server shares.
#[derive(Debug, Args, Clone)]
pub(crate) struct ServerArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) auth: AuthArgs,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// Allow a non-loopback address although no authentication is configured.
    #[arg(long, env = "CLM_INSECURE")]
    pub(crate) insecure: bool,
    /// Do not apply migrations at start-up.
    #[arg(long, env = "CLM_NO_MIGRATE")]
    pub(crate) no_migrate: bool,
    /// Secret for signing page tokens (random per process when unset).
    #[arg(long, env = "CLM_PAGE_TOKEN_SECRET", hide_env_values = true)]
    pub(crate) page_token_secret: Option<String>,
    /// Redis for the score cache (the in-process cache when unset).
    #[arg(long, env = "CLM_REDIS_URL")]
    pub(crate) redis_url: Option<String>,
    /// The Redis is a Redis Cluster: CLM_REDIS_URL lists seed nodes, comma-separated.
    #[arg(long, env = "CLM_REDIS_CLUSTER")]
    pub(crate) redis_cluster: bool,
    /// Scores each scoring process keeps a local copy of when reading a single Redis, kept
    /// current by Redis' invalidation messages (client tracking); 0 reads Redis every time.
    #[arg(long, env = "CLM_REDIS_LOCAL_ENTRIES", default_value_t = 50_000)]
    pub(crate) redis_local_entries: usize,
    /// Prefix of the score cache's Redis keys, so suites can share one Redis.
    #[arg(long, env = "CLM_CACHE_PREFIX", default_value = "clm")]
    pub(crate) cache_prefix: String,
    /// Upper bound on a request's run time, in seconds (a shorter grpc-timeout wins).
    #[arg(long, env = "CLM_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub(crate) request_timeout_secs: u64,
    /// Most calls of one RPC method handled at once per service. Each method's limit adapts
    /// to its latency below this; a call over it is shed with RESOURCE_EXHAUSTED (after
    /// --admission-wait-ms).
    #[arg(long, env = "CLM_CONCURRENCY_LIMIT", default_value_t = 1024)]
    pub(crate) concurrency_limit: usize,
    /// How long a call over its method's limit may wait for a slot before it is shed, in ms
    /// (0: shed at once).
    #[arg(long, env = "CLM_ADMISSION_WAIT_MS", default_value_t = 0)]
    pub(crate) admission_wait_ms: u64,
    /// Largest request message, in bytes.
    #[arg(long, env = "CLM_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub(crate) max_message_bytes: usize,
    /// First port of the admin endpoints (/metrics, /healthz): contacts uses
    /// it, scoring the next, then lifecycle and analytics; 0 picks free ports.
    #[arg(long, env = "CLM_ADMIN_BASE_PORT", default_value_t = 9451)]
    pub(crate) admin_base_port: u16,
    /// Address the admin endpoints bind to (0.0.0.0 where a scraper or an HTTP probe must
    /// reach them from outside, as in a Kubernetes pod).
    #[arg(long, env = "CLM_ADMIN_HOST", default_value = "127.0.0.1")]
    pub(crate) admin_host: std::net::IpAddr,
    /// Seconds in-flight requests may run on after SIGTERM or ctrl-c.
    #[arg(long, env = "CLM_GRACE_PERIOD_SECS", default_value_t = 10)]
    pub(crate) grace_period_secs: u64,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Address of the contacts service.
    #[arg(long, env = "CLM_CONTACTS_ADDR", default_value = "127.0.0.1:50051")]
    pub(crate) contacts_addr: SocketAddr,
    /// Address of the scoring service.
    #[arg(long, env = "CLM_SCORING_ADDR", default_value = "127.0.0.1:50052")]
    pub(crate) scoring_addr: SocketAddr,
    /// Address of the lifecycle service.
    #[arg(long, env = "CLM_LIFECYCLE_ADDR", default_value = "127.0.0.1:50053")]
    pub(crate) lifecycle_addr: SocketAddr,
    /// Address of the analytics service.
    #[arg(long, env = "CLM_ANALYTICS_ADDR", default_value = "127.0.0.1:50054")]
    pub(crate) analytics_addr: SocketAddr,
    /// Once serving, load the demo tenant (`clm demo` with its defaults) into tenant
    /// "default".
    #[arg(long)]
    pub(crate) demo: bool,
    /// Where the dashboard page is served (funnel, stages, cohorts and RFM of a tenant,
    /// drawn from analytics through gRPC-Web).
    #[arg(long, env = "CLM_DASHBOARD_ADDR", default_value = "127.0.0.1:9450")]
    pub(crate) dashboard_addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Service {
    /// People, their timeline, imports, merges, erasure.
    Contacts,
    /// Lead scores.
    Scoring,
    /// Lifecycle stages, segments, triggers and the event stream.
    Lifecycle,
    /// Reports.
    Analytics,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The service to run.
    pub(crate) service: Service,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// gRPC address (default: the service's port on loopback, e.g. 127.0.0.1:50051).
    #[arg(long, env = "CLM_LISTEN_ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Where scoring is found (contacts delivers its events there).
    #[arg(long, env = "CLM_SCORING_ADDR", default_value = "127.0.0.1:50052")]
    pub(crate) scoring_addr: String,
    /// Where lifecycle is found (scoring delivers its signals there).
    #[arg(long, env = "CLM_LIFECYCLE_ADDR", default_value = "127.0.0.1:50053")]
    pub(crate) lifecycle_addr: String,
    /// Where analytics is found (contacts and lifecycle deliver there).
    #[arg(long, env = "CLM_ANALYTICS_ADDR", default_value = "127.0.0.1:50054")]
    pub(crate) analytics_addr: String,
}

/// How client commands reach the suite.
#[derive(Debug, Args, Clone)]
pub(crate) struct ClientArgs {
    /// Address of the contacts service.
    #[arg(long, env = "CLM_CONTACTS_ADDR", default_value = "127.0.0.1:50051")]
    pub(crate) contacts_addr: String,
    /// Address of the scoring service.
    #[arg(long, env = "CLM_SCORING_ADDR", default_value = "127.0.0.1:50052")]
    pub(crate) scoring_addr: String,
    /// Address of the lifecycle service.
    #[arg(long, env = "CLM_LIFECYCLE_ADDR", default_value = "127.0.0.1:50053")]
    pub(crate) lifecycle_addr: String,
    /// Address of the analytics service.
    #[arg(long, env = "CLM_ANALYTICS_ADDR", default_value = "127.0.0.1:50054")]
    pub(crate) analytics_addr: String,
    /// The tenant to act for (sent as x-tenant-id; with auth on, the token's tenant rules).
    #[arg(long, env = "CLM_TENANT", default_value = "default")]
    pub(crate) tenant: String,
    /// Bearer token sent with every call (see `clm token issue`).
    #[arg(long, env = "CLM_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// CA that signs the services' certificates: calls go over TLS when set.
    #[arg(long, env = "CLM_TLS_CA_FILE")]
    pub(crate) tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for services that require mutual TLS.
    #[arg(long, env = "CLM_TLS_CERT_FILE", requires = "tls_key_file")]
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "CLM_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub(crate) tls_key_file: Option<PathBuf>,
    /// Seconds one call may take before the client gives up (also sent to the server as
    /// the call's deadline). Reads are retried up to three times while a service is
    /// unavailable or shedding load.
    #[arg(long, env = "CLM_CALL_TIMEOUT_SECS", default_value_t = 30)]
    pub(crate) call_timeout_secs: u64,
    /// Attempts of an idempotent call, the first included (not a flag; see [`Self::once`]).
    #[arg(skip = crate::client::ATTEMPTS)]
    pub(crate) attempts: u32,
}

impl ClientArgs {
    /// The same client, sending every call once: what a load generator measures must be
    /// one attempt, or a refusal retried after its backoff reads as one slow call.
    pub(crate) fn once(&self) -> Self {
        Self {
            attempts: 1,
            ..self.clone()
        }
    }
}

/// What `clm bench` measures.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Workload {
    /// GetScore and BatchGetScores(100) on cached scores, beside the health check.
    ScoreRead,
    /// Interactions streamed by --concurrency RecordInteractions streams until the whole
    /// chain has drained, beside the storage floor (the same rows inserted straight into
    /// the contacts database in batches of the same size).
    Ingest,
    /// Every analytics report over the tenant's data, beside the health check.
    Reports,
    /// GetScore offered open loop at three times the capacity measured in the same run.
    Overload,
    /// ingest, score-read, reports and overload, in that order.
    All,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// How many contacts.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) contacts: u64,
    /// Days of history.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub(crate) days: u32,
    /// The seed every random draw derives from.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// The end of the history (RFC 3339 or YYYY-MM-DD, UTC); default: the start of today.
    #[arg(long)]
    pub(crate) as_of: Option<String>,
    /// Concurrent RecordInteractions streams.
    #[arg(long, default_value_t = 4)]
    pub(crate) streams: usize,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The workload.
    pub(crate) workload: Workload,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Concurrent callers.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// How long each row is measured, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: std::time::Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// ingest: how many interactions.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) interactions: u64,
    /// ingest: interactions per stream message (and rows per INSERT of the floor).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) batch_size: u64,
    /// overload: contacts of the demo tenant (the demo's seed 1) whose funnel is read.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) demo_contacts: u64,
    /// ingest: the suite's storage, where the floor is measured and the outboxes are watched.
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a signed token.
    Issue {
        #[command(flatten)]
        auth: AuthArgs,
        /// The tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// A granted scope (repeatable), e.g. contacts:read; `all` grants every public scope.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime, e.g. 15m, 12h, 30d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// Who the token is for (`sub`).
        #[arg(long, default_value = "operator")]
        subject: String,
    },
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum ContactsCommand {
    /// Create a contact.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// Email (required, unique in the tenant).
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
        #[arg(long, default_value = "")]
        phone: String,
        #[arg(long, default_value = "")]
        company: String,
        #[arg(long, default_value = "")]
        job_title: String,
        /// ISO 3166-1 alpha-2 code.
        #[arg(long, default_value = "")]
        country: String,
        #[arg(long, default_value = "")]
        city: String,
        #[arg(long, default_value = "")]
        source: String,
        #[arg(long, default_value = "")]
        campaign: String,
        /// A custom attribute, KEY=VALUE (repeatable).
        #[arg(long = "attr", value_parser = parse_pair)]
        attributes: Vec<(String, String)>,
        /// The contact agreed to receive email.
        #[arg(long)]
        email_opt_in: bool,
    },
    /// Show one contact.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact's id.
        id: String,
    },
    /// List contacts, optionally filtered.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Filter expression, e.g. 'country = "DE" AND job_title ~ "cto"'.
        #[arg(long, default_value = "")]
        filter: String,
        /// Order: created_at, updated_at, email, last_name, company or country, with optional " desc".
        #[arg(long, default_value = "")]
        order_by: String,
        /// Contacts per page.
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        /// Fetch every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Import contacts from a CSV file with a header row. Columns named like contact
    /// fields fill them; any other column becomes an attribute.
    Import {
        #[command(flatten)]
        client: ClientArgs,
        /// The CSV file.
        file: PathBuf,
        /// Update contacts whose email exists already (default: reject those rows).
        #[arg(long)]
        update_existing: bool,
        /// Rows per stream message.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum InteractionsCommand {
    /// Record one interaction.
    Record {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact's id.
        #[arg(long)]
        contact: String,
        /// The interaction type (purchase, email_open, ...).
        #[arg(long = "type")]
        kind: String,
        /// Idempotency key (default: a new UUIDv7).
        #[arg(long)]
        event_id: Option<String>,
        /// When it happened: RFC 3339 or YYYY-MM-DD (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Money involved, e.g. 49.90 (needs --currency).
        #[arg(long, requires = "currency")]
        value: Option<String>,
        /// ISO 4217 currency of --value.
        #[arg(long)]
        currency: Option<String>,
        #[arg(long, default_value = "")]
        campaign: String,
        #[arg(long, default_value = "")]
        channel: String,
        /// A property, KEY=VALUE (repeatable).
        #[arg(long = "prop", value_parser = parse_pair)]
        properties: Vec<(String, String)>,
    },
    /// List a contact's timeline, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact's id.
        #[arg(long)]
        contact: String,
        /// Only these types (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Interactions per page.
        #[arg(long, default_value_t = 50)]
        page_size: i32,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ScoreCommand {
    /// A contact's score.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact's id.
        #[arg(long)]
        contact: String,
        /// The scoring model (the tenant's default when omitted).
        #[arg(long, default_value = "")]
        model: String,
    },
    /// Each rule's contribution to a contact's score, after decay.
    Explain {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact's id.
        #[arg(long)]
        contact: String,
        /// The scoring model (the tenant's default when omitted).
        #[arg(long, default_value = "")]
        model: String,
    },
    /// The ledger entries behind a contact's score, newest first.
    History {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact's id.
        #[arg(long)]
        contact: String,
        /// The scoring model (the tenant's default when omitted).
        #[arg(long, default_value = "")]
        model: String,
        /// Entries to show.
        #[arg(long, default_value_t = 50)]
        page_size: i32,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// The tenant's scoring models.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One model's rules and thresholds.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        /// The model (the tenant's default when omitted).
        #[arg(default_value = "")]
        id: String,
        /// A past version of the model (default: the current one).
        #[arg(long = "model-version", default_value_t = 0)]
        model_version: i64,
    },
    /// Dry run: how bands would shift if a model were changed, over the recorded history.
    Simulate {
        #[command(flatten)]
        client: ClientArgs,
        /// The model to start from (the tenant's default when omitted).
        #[arg(long, default_value = "")]
        from: String,
        /// Change a threshold, NAME=POINTS (repeatable).
        #[arg(long = "threshold", value_parser = parse_number_pair)]
        thresholds: Vec<(String, f64)>,
        /// Change a rule's points, RULE_ID=POINTS (repeatable).
        #[arg(long = "points", value_parser = parse_number_pair)]
        points: Vec<(String, f64)>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum StageCommand {
    /// A contact's current stage.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact's id.
        #[arg(long)]
        contact: String,
        /// The stage model (the tenant's default when omitted).
        #[arg(long, default_value = "")]
        model: String,
    },
    /// A contact's stays in each stage, with causes.
    History {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact's id.
        #[arg(long)]
        contact: String,
        /// The stage model (the tenant's default when omitted).
        #[arg(long, default_value = "")]
        model: String,
    },
    /// Move a contact by hand (backwards needs --override and --reason).
    Move {
        #[command(flatten)]
        client: ClientArgs,
        /// The contact's id.
        #[arg(long)]
        contact: String,
        /// The stage to move to.
        #[arg(long)]
        to: String,
        /// Allow a backward move.
        #[arg(long = "override")]
        force: bool,
        /// Why (kept in history).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who moves it (kept in history).
        #[arg(long, env = "USER", default_value = "")]
        actor: String,
        /// The stage model (the tenant's default when omitted).
        #[arg(long, default_value = "")]
        model: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SegmentsCommand {
    /// Create a segment, e.g. --filter 'count.purchase.90d >= "2" AND stage = "retention"'.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// A unique name.
        #[arg(long)]
        name: String,
        /// The filter over stage, band, score, attributes.KEY, count.TYPE.Nd, spend.Nd, inactive_days.
        #[arg(long)]
        filter: String,
    },
    /// The tenant's segments with their sizes.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A segment's members.
    Members {
        #[command(flatten)]
        client: ClientArgs,
        /// The segment's id.
        id: String,
    },
}

/// The time window of a report.
#[derive(Debug, Args, Clone)]
pub(crate) struct ReportWindow {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// First day of the range (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Day after the range (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// Contacts per stage, entries, exits, median time in stage, and transitions.
    Stages(ReportWindow),
    /// RFM segments.
    Rfm {
        #[command(flatten)]
        window: ReportWindow,
        /// The currency whose orders are scored.
        #[arg(long, default_value = "EUR")]
        currency: String,
    },
    /// CAC and ROMI per channel (or campaign).
    Cac {
        #[command(flatten)]
        window: ReportWindow,
        /// The currency.
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Group by campaign instead of channel.
        #[arg(long)]
        by_campaign: bool,
    },
    /// Net Promoter Score, overall and by stage.
    Nps(ReportWindow),
    /// Conversion through ordered steps: interaction types, or stages with --stages.
    Funnel {
        #[command(flatten)]
        window: ReportWindow,
        /// The steps in order (2 to 20), e.g. page_view demo_request purchase.
        #[arg(required = true, num_args = 2..=20)]
        steps: Vec<String>,
        /// The steps are stage names.
        #[arg(long)]
        stages: bool,
        /// Conversion window in days, from the first step.
        #[arg(long, default_value_t = 30)]
        window_days: i64,
        /// sequential, strict or any.
        #[arg(long, default_value = "sequential")]
        order: String,
        /// Break down by a contact attribute.
        #[arg(long, default_value = "")]
        by: String,
    },
    /// Cohort retention by first-purchase month.
    Cohorts {
        #[command(flatten)]
        window: ReportWindow,
        /// The currency of the orders counted.
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Count "on or after" period k instead of "on".
        #[arg(long)]
        on_or_after: bool,
        /// Cohorts by creation instead of first purchase.
        #[arg(long)]
        by_creation: bool,
    },
    /// Customer value: historic revenue, simple CLV and predictive CLV (BG/NBD, Gamma-Gamma).
    Clv {
        #[command(flatten)]
        window: ReportWindow,
        /// One contact (default: the average customer).
        #[arg(long, default_value = "")]
        contact: String,
        /// The currency.
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Prediction horizon in weeks.
        #[arg(long, default_value_t = 52)]
        weeks: i32,
    },
    /// New, returning, resurrecting and dormant customers per month.
    Activity {
        #[command(flatten)]
        window: ReportWindow,
        /// The currency of the orders counted.
        #[arg(long, default_value = "EUR")]
        currency: String,
    },
}

fn parse_number_pair(text: &str) -> Result<(String, f64), String> {
    let (key, value) = parse_pair(text)?;
    let number = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    Ok((key, number))
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
