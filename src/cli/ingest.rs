//! `nxguard ingest`: the evidence and policy centre for resolvers nxguard does not replace:
//! dnstap in (`[ingest]`), the Response Policy Zone out (`[rpz]`), no DNS service of its own.

use std::path::Path;

use anyhow::{Context, Result};

pub fn run(args: &super::serve::Args, path: Option<&Path>) -> Result<()> {
    let path = path.context("nxguard ingest needs --config (with an [ingest] table)")?;
    let config = super::load_config(Some(path))?;
    anyhow::ensure!(!config.ingest.dnstap.is_empty(), "{}: [ingest] lists no dnstap socket", path.display());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(super::serve::serve(Some(path), config, false, args.ready_file.as_deref()))
}
