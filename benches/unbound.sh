# shellcheck shell=bash
# Unbound configurations shared by load.sh and ab.sh (sourced, not run).

# unbound_server PORT DIRECTORY: the `server:` lines every Unbound of the benchmarks starts
# with: one thread on 127.0.0.1@PORT, in the foreground, logging nothing.
unbound_server() {
    cat <<EOF
server:
  interface: 127.0.0.1@$1
  port: $1
  interface-automatic: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$2"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
EOF
}

# write_upstream_conf FILE PORT DIRECTORY: the local authoritative upstream. Every name under
# bench.test answers A 192.0.2.1 with TTL 3600 (a redirect zone works like a wildcard);
# everything else is NXDOMAIN, so nothing ever leaves the machine.
write_upstream_conf() {
    {
        unbound_server "$2" "$3"
        cat <<EOF
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  local-zone: "." static
  local-zone: "test." nodefault
  local-zone: "bench.test." redirect
  local-data: "bench.test. 3600 IN A 192.0.2.1"
remote-control:
  control-enable: no
EOF
    } >"$1"
}
