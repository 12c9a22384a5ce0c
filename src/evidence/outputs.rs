//! The evidence outputs of a running server: opened at start, closed after the last record.
//!
//! Owns: opening the device inventory and leases (and re-reading them), the reverse-DNS name
//! cache and its lookup task, the pseudonymisation key,
//! the attempt store and the SIEM stream as the config names them, and letting the writers flush
//! what they hold at shutdown.
//! Must not touch: the query path; the dispatcher is the only thing that feeds these outputs.

use std::{sync::Arc, time::Duration};

use tracing::{error, info, warn};

use crate::{
    config::Config,
    evidence::{
        devices::{Devices, DevicesError},
        dispatch::{Outputs, Sink},
        rdns::ReverseNames,
        siem::{SiemError, SiemWriter},
        store::{Pseudonymizer, StoreError, StoreWriter},
    },
};

/// Why an output could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    #[error(transparent)]
    Devices(#[from] DevicesError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Siem(#[from] SiemError),
    #[error(transparent)]
    ReverseDns(#[from] crate::dns::lookup::LookupError),
}

/// Where attempt records end up besides the log, and the device identities they carry.
pub struct Records {
    pub devices: Arc<Devices>,
    pub store: Option<StoreWriter>,
    pub siem: Option<SiemWriter>,
    refresh: Option<tokio::task::JoinHandle<()>>,
}

impl Records {
    /// Opens the configured outputs; `taps` receive every record too (tests).
    pub fn open(config: &Config, taps: Vec<Sink>) -> Result<(Records, Outputs), OutputsError> {
        let devices = Arc::new(Devices::load(&config.devices)?);
        let reverse = ReverseNames::start(&config.devices)?;
        let pseudonymizer = match (&config.privacy.key_file, config.privacy.pseudonymize) {
            (Some(key), true) => Some(Arc::new(Pseudonymizer::from_file(key)?)),
            _ => None,
        };
        let (store_sink, store) = match StoreWriter::start(&config.store)? {
            Some((sink, writer)) => (Some(sink), Some(writer)),
            None => {
                warn!("no attempt store configured (store.path or store.url): attempts go only to the log");
                (None, None)
            }
        };
        let (siem_sink, siem) = match &config.siem.path {
            Some(path) => {
                let (sink, writer) = SiemWriter::start(path, config.store.queue)?;
                (Some(sink), Some(writer))
            }
            None => (None, None),
        };
        let refresh = (!devices.files().is_empty()).then(|| {
            let devices = Arc::clone(&devices);
            let every = Duration::from_secs(config.devices.reread_secs);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    match devices.refresh() {
                        Ok(true) => info!("device inventory or leases re-read"),
                        Ok(false) => {}
                        Err(error) => error!(%error, "device files unreadable; the previous view stays in force"),
                    }
                }
            })
        });
        let outputs = Outputs {
            store: store_sink,
            siem: siem_sink,
            pseudonymizer,
            devices: Some(Arc::clone(&devices)),
            reverse,
            node: config.store.node_name(),
            taps,
        };
        Ok((Records { devices, store, siem, refresh }, outputs))
    }

    /// After the dispatcher has ended: lets the writers write what they hold, then stops them.
    pub async fn close(self) {
        if let Some(refresh) = self.refresh {
            refresh.abort();
        }
        let (store, siem) = (self.store, self.siem);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(store) = store {
                store.close();
            }
            if let Some(siem) = siem {
                siem.close();
            }
        })
        .await;
    }
}
