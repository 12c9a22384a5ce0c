//! TSIG (RFC 8945) for zone transfers: the key from a BIND key file, checking a request's
//! signature, and signing each message of the answer, chained to the one before.

use std::path::{Path, PathBuf};

use hickory_proto::{
    ProtoError,
    dnssec::DnsSecError,
    rr::{
        Name, Record, TSigner,
        rdata::tsig::{TSIG, TsigAlgorithm, make_tsig_record},
    },
    serialize::binary::BinEncoder,
};

/// The fudge BIND and RFC 8945 §10 recommend: five minutes of clock difference.
const FUDGE_SECS: u16 = 300;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("rpz.tsig_key_file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("rpz.tsig_key_file {path}: {source}")]
    Format { path: PathBuf, source: KeyFormat },
}

/// What is wrong inside a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFormat {
    #[error("does not start with `key`")]
    NoKeyword,
    #[error("no `{{` after the key name")]
    NoBody,
    #[error("no algorithm")]
    NoAlgorithm,
    #[error("algorithm {0}: only hmac-sha256 is supported")]
    Algorithm(String),
    #[error("no secret")]
    NoSecret,
    #[error("secret: {0}")]
    Secret(#[source] data_encoding::DecodeError),
    #[error("key name {name:?}: {source}")]
    Name { name: String, source: ProtoError },
    #[error("{0}")]
    Signer(#[source] DnsSecError),
}

/// Why a message of an answer could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{0}")]
    Encode(#[from] ProtoError),
    #[error("{0}")]
    Mac(#[from] DnsSecError),
}

/// Reads a key file as `tsig-keygen -a hmac-sha256 NAME` writes it:
/// `key "NAME" { algorithm hmac-sha256; secret "BASE64"; };`.
pub fn read_key(path: &Path) -> Result<TSigner, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?;
    parse_key(&text).map_err(|source| KeyError::Format { path: path.into(), source })
}

pub fn parse_key(text: &str) -> Result<TSigner, KeyFormat> {
    let text: String = text.lines().map(|l| l.split(['#']).next().unwrap_or("")).collect::<Vec<_>>().join(" ");
    let rest = text.trim().strip_prefix("key").ok_or(KeyFormat::NoKeyword)?;
    let (name, body) = rest.split_once('{').ok_or(KeyFormat::NoBody)?;
    let name = name.trim().trim_matches('"');
    let field = |key: &str| {
        body.split(';').map(str::trim).find_map(|s| s.strip_prefix(key)).map(|v| v.trim().trim_matches('"').to_string())
    };
    let algorithm = field("algorithm").ok_or(KeyFormat::NoAlgorithm)?;
    if !algorithm.eq_ignore_ascii_case("hmac-sha256") {
        return Err(KeyFormat::Algorithm(algorithm));
    }
    let secret = field("secret").ok_or(KeyFormat::NoSecret)?;
    let secret = data_encoding::BASE64.decode(secret.as_bytes()).map_err(KeyFormat::Secret)?;
    let mut name = Name::from_ascii(name).map_err(|source| KeyFormat::Name { name: name.to_string(), source })?;
    name.set_fqdn(true);
    TSigner::new(secret, TsigAlgorithm::HmacSha256, name, FUDGE_SECS).map_err(KeyFormat::Signer)
}

/// Why a signed request was not accepted (answered NOTAUTH, RFC 8945 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    UnknownKey,
    BadSignature,
    BadTime,
}

/// Checks a request's TSIG against `signer`; on success, what its answer is signed with.
pub fn verify(signer: &TSigner, request: &[u8], tsig: &Record<TSIG>, now: u64) -> Result<Chain, Rejected> {
    if &tsig.name != signer.signer_name() || tsig.data.algorithm != *signer.algorithm() {
        return Err(Rejected::UnknownKey);
    }
    let (mac, _, window) = signer.verify_message_byte(request, None, true).map_err(|_| Rejected::BadSignature)?;
    if !window.contains(&now) {
        return Err(Rejected::BadTime);
    }
    Ok(Chain { signer: signer.clone(), previous_mac: mac, first: true, time: now })
}

/// Signs the messages of one answer: the first over the request's MAC and the full TSIG
/// variables, each later one over the previous MAC and the timers only (RFC 8945 §5.3.1).
pub struct Chain {
    signer: TSigner,
    previous_mac: Vec<u8>,
    first: bool,
    time: u64,
}

impl Chain {
    /// The TSIG record for `message` (encoded without it), with `id` the request's ID.
    pub fn sign(&mut self, message: &[u8], id: u16) -> Result<Box<Record<TSIG>>, SignError> {
        let stub = TSIG::new(self.signer.algorithm().clone(), self.time, FUDGE_SECS, Vec::new(), id, None, Vec::new());
        let tbs = if self.first {
            self.signer.encode_response_tbs(&self.previous_mac, message, &stub)?
        } else {
            let mut tbs = Vec::with_capacity(message.len() + self.previous_mac.len() + 10);
            let mut encoder = BinEncoder::new(&mut tbs);
            let timers = (|| {
                encoder.emit_u16(self.previous_mac.len() as u16)?;
                encoder.emit_vec(&self.previous_mac)?;
                encoder.emit_vec(message)?;
                encoder.emit_u16((self.time >> 32) as u16)?;
                encoder.emit_u32(self.time as u32)?;
                encoder.emit_u16(FUDGE_SECS)
            })();
            timers?;
            tbs
        };
        let mac = self.signer.sign(&tbs)?;
        self.first = false;
        self.previous_mac.clone_from(&mac);
        Ok(Box::new(make_tsig_record(self.signer.signer_name().clone(), stub.set_mac(mac))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_key_as_tsig_keygen_writes_it() {
        let text =
            "key \"nxguard-xfr\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n";
        let signer = parse_key(text).expect("key parses");
        assert_eq!(signer.signer_name().to_ascii(), "nxguard-xfr.");
        assert_eq!(signer.key(), b"secretsecretsecretsecret");
    }

    #[test]
    fn refuses_other_algorithms_and_broken_files() {
        let md5 = "key \"k\" { algorithm hmac-md5; secret \"c2VjcmV0\"; };";
        assert!(parse_key(md5).err().is_some_and(|e| e.to_string().contains("only hmac-sha256")));
        assert!(parse_key("nothing here").is_err());
        let bad_secret = parse_key("key \"k\" { algorithm hmac-sha256; secret \"***\"; };");
        assert!(bad_secret.err().is_some_and(|e| e.to_string().contains("secret")));
    }
}
