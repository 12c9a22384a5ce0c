# shellcheck shell=bash
# The dnsdist configuration that load.sh and ab.sh compare nxguard with (sourced, not run).

# write_dnsdist_conf FILE PORT UPSTREAM_PORT DOMAINS_FILE: dnsdist on 127.0.0.1:PORT (UDP and
# TCP), forwarding to the local authoritative upstream on UPSTREAM_PORT, with a packet cache (as
# nxguard's answer cache) and NXDOMAIN for every name at or under a domain of DOMAINS_FILE (the
# first field of each line, read by Lua at start-up, so a 1M list is not a 1M-line config). No
# security polling (it would ask the internet), no console, no carbon; the query rings keep
# their default size (dnsdist's own record of recent queries). Run it with
# `dnsdist --supervised --disable-syslog -C FILE`.
write_dnsdist_conf() {
    cat >"$1" <<EOF
setSecurityPollSuffix("")
setLocal("127.0.0.1:$2")
setACL({"127.0.0.0/8"})
newServer({address = "127.0.0.1:$3", checkName = "host1.bench.test.", name = "upstream"})
getPool(""):setCache(newPacketCache(5000000, {maxTTL = 86400}))
local blocked = newSuffixMatchNode()
for line in io.lines("$4") do
  local domain = line:match("^(%S+)")
  if domain then blocked:add(domain) end
end
addAction(SuffixMatchNodeRule(blocked), RCodeAction(DNSRCode.NXDOMAIN))
EOF
}
