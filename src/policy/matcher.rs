//! The blocking policy: which banned app, if any, a name belongs to.
//!
//! Owns: the compiled matcher (every enforced app's domains, the feeds' entries, the operator's
//! extra blocks and allow exceptions), which list or feed each entry came from (its rule, for
//! the evidence stamp), and the policy's identity (generation, version hash). The client groups
//! ride along (`groups`), so that one swap replaces both.
//! Does not own: reading config or list files (`config`, `domains`), or answering (`resolve`).
//!
//! Matching walks the name's suffixes at label boundaries and looks each up in one hash table
//! over an arena of names: no depth limit, no allocation per lookup, one probe per label. The
//! most specific block entry names the app; an allow entry anywhere above the name wins.

use std::{
    hash::BuildHasher,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use hashbrown::HashTable;

use crate::{
    config::{GroupMode, ListMode},
    dns::wire::MAX_NAME_TEXT,
    policy::{domains::Kind, groups::Groups},
};

/// A banned app (or the operator's own category) as named in the attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub name: String,
    pub vendor: String,
    /// The answer this category always gets, whatever `block.response` says (bypass names).
    pub response: Option<crate::config::BlockResponse>,
}

impl App {
    pub fn new(id: &str, name: &str, vendor: &str) -> App {
        App { id: id.into(), name: name.into(), vendor: vendor.into(), response: None }
    }

    /// The text of the Extended DNS Error in blocked answers (RFC 8914 §2).
    pub fn notice(&self) -> String {
        format!("{} ({}) is banned on this network", self.name, self.vendor)
    }
}

/// An app with its precomputed notice, shared by the policy and the attempt records.
#[derive(Debug, PartialEq, Eq)]
pub struct AppEntry {
    pub app: App,
    pub notice: String,
}

/// What matched: the app, the listed domain and its kind, and the list or feed it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'p> {
    pub app: &'p Arc<AppEntry>,
    pub domain: &'p str,
    pub kind: Kind,
    pub exact: bool,
    /// The list or feed with its version, e.g. `builtin:tiktok@1a2b…` or `feed:extra@"etag"`.
    pub rule: &'p Arc<str>,
    /// The list's mode: enforced, or shadow (log-only).
    pub mode: ListMode,
}

/// One listed name, as `Policy::entries` hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'p> {
    /// `name` (and, unless `exact`, its subdomains) belongs to `app`, listed by `rule`.
    Block { name: &'p str, app: &'p App, rule: &'p str, exact: bool, mode: ListMode },
    /// `name` and its subdomains are exempt from every block.
    Allow { name: &'p str },
}

/// Where entries came from: an app, the list or feed (its rule text) and the list's mode. A
/// slot names its origin by index, so an entry costs no more than before.
#[derive(Debug)]
struct Origin {
    app: u16,
    rule: Arc<str>,
    mode: ListMode,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Block { app: u16, kind: Kind, exact: bool },
    Allow,
}

/// One listed name: where it sits in the arena and its rule, packed into 8 bytes (a 1 M-entry
/// list keeps a million of them).
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: u32,
    len: u8,
    /// Bits 0–2: the kind; bit 3: exact; bit 4: allow.
    tag: u8,
    app: u16,
}

const TAG_EXACT: u8 = 1 << 3;
const TAG_ALLOW: u8 = 1 << 4;
const KINDS: [Kind; 6] = [Kind::Api, Kind::Telemetry, Kind::Cdn, Kind::Web, Kind::Alias, Kind::Unspecified];

impl Slot {
    fn new(start: u32, len: u8, rule: Rule) -> Slot {
        match rule {
            Rule::Allow => Slot { start, len, tag: TAG_ALLOW, app: 0 },
            Rule::Block { app, kind, exact } => {
                // KINDS lists the kinds in declaration order, so `as u8` indexes it.
                let kind = kind as u8;
                Slot { start, len, tag: kind | if exact { TAG_EXACT } else { 0 }, app }
            }
        }
    }

    fn rule(self) -> Rule {
        if self.tag & TAG_ALLOW != 0 {
            return Rule::Allow;
        }
        let kind = KINDS.get(usize::from(self.tag & 7)).copied().unwrap_or_default();
        Rule::Block { app: self.app, kind, exact: self.tag & TAG_EXACT != 0 }
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

pub struct Policy {
    apps: Vec<Arc<AppEntry>>,
    origins: Vec<Origin>,
    arena: String,
    slots: Vec<Slot>,
    table: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    has_allow: bool,
    /// Distinguishes policies built in this process (cache entries remember it).
    generation: u64,
    /// Hash of the loaded domain data, stable across restarts (for metrics and `check`).
    version: u64,
    /// `version` as hex, made once: every attempt's stamp shares it.
    version_text: Arc<str>,
    duplicates: usize,
    groups: Groups,
}

/// Builds a policy; later duplicates of a name are ignored (and counted).
pub struct PolicyBuilder {
    policy: Policy,
}

impl PolicyBuilder {
    pub fn new() -> Self {
        PolicyBuilder {
            policy: Policy {
                apps: Vec::new(),
                origins: Vec::new(),
                arena: String::new(),
                slots: Vec::new(),
                table: HashTable::new(),
                hasher: foldhash::fast::FixedState::with_seed(0x6e78_6775_6172_6421),
                has_allow: false,
                generation: 0,
                version: 0xcbf2_9ce4_8422_2325,
                version_text: Arc::from(""),
                duplicates: 0,
                groups: Groups::default(),
            },
        }
    }

    pub fn with_capacity(mut self, domains: usize, arena_bytes: usize) -> Self {
        self.policy.slots.reserve(domains);
        self.policy.table.reserve(domains, |_| 0);
        self.policy.arena.reserve(arena_bytes);
        self
    }

    /// Registers an app with an origin named after it; returns the origin's index for `block`.
    pub fn app(&mut self, app: App) -> u16 {
        self.mix(app.id.as_bytes());
        let rule = Arc::from(app.id.as_str());
        let notice = app.notice();
        self.policy.apps.push(Arc::new(AppEntry { app, notice }));
        let app = (self.policy.apps.len() - 1) as u16;
        self.policy.origins.push(Origin { app, rule, mode: ListMode::Enforce });
        (self.policy.origins.len() - 1) as u16
    }

    /// A further origin (another list or feed) for the app of origin `of`; returns its index.
    pub fn origin(&mut self, of: u16, rule: &str, mode: ListMode) -> u16 {
        let app = self.policy.origins.get(usize::from(of)).map_or(0, |o| o.app);
        self.policy.origins.push(Origin { app, rule: Arc::from(rule), mode });
        (self.policy.origins.len() - 1) as u16
    }

    /// Names the list or feed of `origin` (known once it has been read, with its hash).
    pub fn set_rule(&mut self, origin: u16, rule: &str, mode: ListMode) {
        if let Some(o) = self.policy.origins.get_mut(usize::from(origin)) {
            o.rule = Arc::from(rule);
            o.mode = mode;
        }
    }

    /// The first origin registered for app `id`.
    pub fn find_app(&self, id: &str) -> Option<u16> {
        let p = &self.policy;
        p.origins.iter().position(|o| p.apps[usize::from(o.app)].app.id == id).map(|i| i as u16)
    }

    /// Blocks `domain` (lowercase, no trailing dot) and, unless `exact`, every subdomain, as an
    /// entry of `app` (an origin index from `app` or `origin`).
    pub fn block(&mut self, domain: &str, app: u16, kind: Kind, exact: bool) {
        self.insert(domain, Rule::Block { app, kind, exact });
    }

    /// Exempts `domain` and its subdomains from every block entry.
    pub fn allow(&mut self, domain: &str) {
        self.policy.has_allow = true;
        self.insert(domain, Rule::Allow);
    }

    fn mix(&mut self, bytes: &[u8]) {
        // FNV-1a: stable across builds and platforms, unlike the table's hasher.
        for &b in bytes.iter().chain(b"\n") {
            self.policy.version = (self.policy.version ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn insert(&mut self, domain: &str, rule: Rule) {
        let domain = domain.trim_end_matches('.');
        debug_assert!(domain.len() <= MAX_NAME_TEXT);
        let p = &mut self.policy;
        let hash = p.hasher.hash_one(domain.as_bytes());
        let (arena, slots) = (&p.arena, &p.slots);
        if p.table.find(hash, |&i| slot_name(arena, &slots[i as usize]) == domain.as_bytes()).is_some() {
            p.duplicates += 1;
            return;
        }
        let slot = Slot::new(p.arena.len() as u32, domain.len() as u8, rule);
        p.arena.push_str(domain);
        p.slots.push(slot);
        let index = (p.slots.len() - 1) as u32;
        let (arena, slots) = (&p.arena, &p.slots);
        p.table.insert_unique(hash, index, |&i| {
            foldhash::fast::FixedState::with_seed(0x6e78_6775_6172_6421).hash_one(slot_name(arena, &slots[i as usize]))
        });
        let tag = match rule {
            Rule::Allow => [b'a', 0, 0],
            Rule::Block { app, exact, .. } => [if exact { b'=' } else { b'b' }, (app >> 8) as u8, app as u8],
        };
        self.mix(domain.as_bytes());
        self.mix(&tag);
    }

    /// Names an app (by its origin) registered before its list's header was read.
    pub fn describe_app(&mut self, origin: u16, name: &str, vendor: &str) {
        let app = self.policy.origins.get(usize::from(origin)).map_or(usize::MAX, |o| usize::from(o.app));
        if let Some(entry) = self.policy.apps.get_mut(app) {
            let app = App::new(&entry.app.id, name, vendor);
            let notice = app.notice();
            *entry = Arc::new(AppEntry { app, notice });
        }
    }

    pub fn build(mut self) -> Policy {
        // Growth left spare capacity; give it back (for large lists these are mappings of
        // their own, so shrinking returns the memory to the system).
        self.policy.arena.shrink_to_fit();
        self.policy.slots.shrink_to_fit();
        self.policy.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        // A shadowed list blocks nothing: two nodes that differ only there must differ in version.
        let modes: Vec<u8> = self.policy.origins.iter().map(|o| o.mode as u8).collect();
        self.mix(&modes);
        self.policy.version_text = Arc::from(format!("{:016x}", self.policy.version));
        self.policy
    }
}

impl Default for PolicyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn slot_name<'a>(arena: &'a str, slot: &Slot) -> &'a [u8] {
    &arena.as_bytes()[slot.start as usize..slot.start as usize + slot.len as usize]
}

impl Policy {
    /// Looks up a name already lowercased, without the trailing dot (as `wire` produces it).
    pub fn lookup(&self, name: &[u8]) -> Option<Match<'_>> {
        let mut found: Option<Slot> = None;
        let mut start = 0usize;
        loop {
            let suffix = &name[start..];
            if let Some(slot) = self.find(suffix) {
                match slot.rule() {
                    Rule::Allow => return None,
                    Rule::Block { exact, .. } if found.is_none() && (!exact || start == 0) => {
                        found = Some(slot);
                        if !self.has_allow {
                            break;
                        }
                    }
                    Rule::Block { .. } => {}
                }
            }
            match suffix.iter().position(|&b| b == b'.') {
                Some(dot) => start += dot + 1,
                None => break,
            }
        }
        let slot = found?;
        let Rule::Block { app, kind, exact } = slot.rule() else {
            return None;
        };
        let domain = &self.arena[slot.start as usize..slot.start as usize + slot.len as usize];
        let origin = self.origins.get(usize::from(app))?;
        let app = self.apps.get(usize::from(origin.app))?;
        Some(Match { app, domain, kind, exact, rule: &origin.rule, mode: origin.mode })
    }

    /// What happens to a match for `client`: its group's mode for the app, else the list's.
    /// Without groups and shadow lists this is two comparisons; only matched names get here.
    #[inline]
    pub fn decide(&self, matched: &Match<'_>, client: std::net::IpAddr) -> GroupMode {
        let group =
            if self.groups.is_empty() { GroupMode::Enforce } else { self.groups.mode(client, &matched.app.app.id) };
        match (group, matched.mode) {
            (GroupMode::Exempt, _) => GroupMode::Exempt,
            (GroupMode::LogOnly, _) | (_, ListMode::LogOnly) => GroupMode::LogOnly,
            (GroupMode::Enforce, ListMode::Enforce) => GroupMode::Enforce,
        }
    }

    /// Installs the client groups; they are part of the policy's version.
    pub fn set_groups(&mut self, groups: Groups) {
        if !groups.is_empty() {
            for &b in &groups.fingerprint().to_le_bytes() {
                self.version = (self.version ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            self.version_text = Arc::from(format!("{:016x}", self.version));
        }
        self.groups = groups;
    }

    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// Whether an allow entry covers `name` (lowercase, no trailing dot).
    pub fn allows(&self, name: &[u8]) -> bool {
        if !self.has_allow {
            return false;
        }
        let mut start = 0usize;
        loop {
            if self.find(&name[start..]).is_some_and(|slot| matches!(slot.rule(), Rule::Allow)) {
                return true;
            }
            match name[start..].iter().position(|&b| b == b'.') {
                Some(dot) => start += dot + 1,
                None => return false,
            }
        }
    }

    /// Looks up a name in any case, with or without the trailing dot.
    pub fn lookup_text(&self, name: &str) -> Option<Match<'_>> {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        let mut buf = [0u8; MAX_NAME_TEXT + 1];
        let lower = buf.get_mut(..name.len())?;
        for (dst, src) in lower.iter_mut().zip(name) {
            *dst = src.to_ascii_lowercase();
        }
        self.lookup(lower)
    }

    fn find(&self, suffix: &[u8]) -> Option<Slot> {
        let hash = self.hasher.hash_one(suffix);
        self.table
            .find(hash, |&i| slot_name(&self.arena, &self.slots[i as usize]) == suffix)
            .map(|&i| self.slots[i as usize])
    }

    pub fn apps(&self) -> &[Arc<AppEntry>] {
        &self.apps
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Stable hex hash of the loaded domain data, apps, list modes and groups (shared text).
    pub fn version(&self) -> Arc<str> {
        Arc::clone(&self.version_text)
    }

    /// The version as an SOA serial for blocked answers.
    pub fn version_serial(&self) -> u32 {
        self.version as u32
    }

    /// The origins (list or feed, with version) and how many block entries each holds.
    pub fn rules(&self) -> Vec<(&str, &str, ListMode)> {
        self.origins.iter().map(|o| (self.apps[usize::from(o.app)].app.id.as_str(), &*o.rule, o.mode)).collect()
    }

    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// Bytes the matcher holds on the heap (arena, slots, table), for benchmarks and metrics.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.slots.capacity() * std::mem::size_of::<Slot>() + self.table.allocation_size()
    }

    /// Every entry in the order it was added, for writing the policy out in other resolvers'
    /// formats (the Response Policy Zone, `nxguard export`).
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        self.slots.iter().map(|slot| {
            let name = &self.arena[slot.start as usize..slot.start as usize + slot.len as usize];
            match slot.rule() {
                Rule::Allow => Entry::Allow { name },
                Rule::Block { app, exact, .. } => {
                    let origin = &self.origins[usize::from(app)];
                    let app = &self.apps[usize::from(origin.app)].app;
                    Entry::Block { name, app, rule: &origin.rule, exact, mode: origin.mode }
                }
            }
        })
    }

    /// A few names per app that the policy blocks, for self-tests and examples.
    pub fn sample_names(&self, per_app: usize) -> Vec<(&App, &str)> {
        let mut counts = vec![0usize; self.apps.len()];
        let mut out = Vec::new();
        for slot in &self.slots {
            if let Rule::Block { app, .. } = slot.rule() {
                let app = self.origins.get(usize::from(app)).map_or(0, |o| usize::from(o.app));
                if counts[app] < per_app {
                    counts[app] += 1;
                    let name = &self.arena[slot.start as usize..slot.start as usize + slot.len as usize];
                    out.push((&self.apps[app].app, name));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let mut b = PolicyBuilder::new();
        let tiktok = b.app(App::new("tiktok", "TikTok", "ByteDance"));
        let lemon8 = b.app(App::new("lemon8", "Lemon8", "ByteDance"));
        b.block("tiktok.com", tiktok, Kind::Web, false);
        b.block("tiktokcdn.com", tiktok, Kind::Cdn, false);
        b.block("p16-lemon8.tiktokcdn.com", lemon8, Kind::Cdn, false);
        b.block("roovza.appsflyersdk.com", tiktok, Kind::Telemetry, true);
        b.allow("good.tiktok.com");
        b.build()
    }

    fn app_of(p: &Policy, name: &str) -> Option<String> {
        p.lookup_text(name).map(|m| m.app.app.id.clone())
    }

    #[test]
    fn matches_apex_and_deep_subdomains() {
        let p = policy();
        assert_eq!(app_of(&p, "tiktok.com"), Some("tiktok".into()));
        assert_eq!(app_of(&p, "a.b.c.d.e.f.g.h.i.j.tiktok.com"), Some("tiktok".into()));
        let m = p.lookup_text("www.tiktok.com").unwrap();
        assert_eq!(m.domain, "tiktok.com");
        assert_eq!(m.kind, Kind::Web);
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter() {
        let p = policy();
        assert_eq!(app_of(&p, "WWW.TikTok.COM."), Some("tiktok".into()));
    }

    #[test]
    fn near_misses_are_not_blocked() {
        let p = policy();
        for name in ["nottiktok.com", "tiktok.com.example.org", "com", "", "tiktok.co", "xtiktokcdn.com"] {
            assert_eq!(app_of(&p, name), None, "{name}");
        }
    }

    #[test]
    fn most_specific_entry_names_the_app() {
        let p = policy();
        assert_eq!(app_of(&p, "x.p16-lemon8.tiktokcdn.com"), Some("lemon8".into()));
        assert_eq!(app_of(&p, "p16-other.tiktokcdn.com"), Some("tiktok".into()));
    }

    #[test]
    fn exact_entries_block_one_host_only() {
        let p = policy();
        assert_eq!(app_of(&p, "roovza.appsflyersdk.com"), Some("tiktok".into()));
        assert_eq!(app_of(&p, "x.roovza.appsflyersdk.com"), None);
        assert_eq!(app_of(&p, "appsflyersdk.com"), None);
    }

    #[test]
    fn allow_beats_block_for_its_subtree() {
        let p = policy();
        assert!(p.allows(b"deep.good.tiktok.com"));
        assert!(!p.allows(b"bad.tiktok.com"));
        assert_eq!(app_of(&p, "good.tiktok.com"), None);
        assert_eq!(app_of(&p, "deep.good.tiktok.com"), None);
        assert_eq!(app_of(&p, "bad.tiktok.com"), Some("tiktok".into()));
    }

    #[test]
    fn names_longer_than_the_limit_do_not_panic() {
        let p = policy();
        let long = "a.".repeat(200) + "tiktok.com";
        assert_eq!(app_of(&p, &long), None);
    }

    #[test]
    fn packed_slots_keep_every_kind_and_flag() {
        let mut b = PolicyBuilder::new();
        let app = b.app(App::new("x", "X", "Y"));
        for (i, kind) in KINDS.iter().enumerate() {
            b.block(&format!("k{i}.example"), app, *kind, i % 2 == 0);
        }
        let p = b.build();
        for (i, kind) in KINDS.iter().enumerate() {
            let m = p.lookup_text(&format!("k{i}.example")).unwrap();
            assert_eq!((m.kind, m.exact), (*kind, i % 2 == 0));
        }
        assert_eq!(std::mem::size_of::<Slot>(), 8);
    }

    #[test]
    fn version_depends_on_content_and_duplicates_are_counted() {
        let a = policy();
        let b = policy();
        assert_eq!(a.version(), b.version());
        assert_ne!(a.generation(), b.generation());
        let mut builder = PolicyBuilder::new();
        let app = builder.app(App::new("x", "X", "Y"));
        builder.block("a.example", app, Kind::Api, false);
        builder.block("a.example", app, Kind::Api, false);
        let c = builder.build();
        assert_eq!(c.duplicates(), 1);
        assert_eq!(c.len(), 1);
        assert_ne!(c.version(), a.version());
    }
}
