#!/usr/bin/env bash
# The README's test command: the whole test suite, the tests that drive other programs included.
#
#   scripts/test.sh [cargo test arguments...]
#
# Some integration tests drive programs that a fresh machine may lack (systemd-socket-activate,
# promtool, haproxy, python3, openssl) or need root (a tmpfs, a port below 1024). They are marked
# `#[ignore = "needs ..."]`, so a plain `cargo test` lists them as ignored rather than passing them
# untested. This script installs the missing programs from Debian's packages (as root), then runs
# `cargo test -- --include-ignored`: every test runs. Should a program still be missing (not root,
# or the package registry cannot be reached), the tests that need it are skipped *by name*, each
# with a `SKIPPED` line saying why, never passed untested; the same for the two tests that need root.
set -euo pipefail
cd "$(dirname "$0")/.."

# A program, its Debian package, and the tests that drive it.
PROGRAMS=(
    "systemd-socket-activate|systemd|activation::inherited_tcp_and_unix_sockets_are_served_by_every_worker activation::an_inherited_udp_socket_is_served activation::a_socket_named_after_a_protocol_serves_that_protocol activation::a_socket_with_any_other_name_serves_dash_p"
    "promtool|prometheus|metrics::both_pages_pass_promtool"
    "haproxy|haproxy|haproxy::haproxy_spreads_connections_and_routes_around_a_stopped_instance haproxy::haproxy_send_proxy_v2_carries_the_client_address"
    "nc|netcat-openbsd|doc_blocks::the_console_blocks_print_what_they_show"
    "python3|python3|compat::the_tutorial_tcp_client_gets_one_stamped_reply_per_send compat::the_tutorial_udp_client_gets_one_stamped_datagram_per_sendto files::the_tutorial_python_upload_client_works_unchanged scripts::the_attack_driver_compiles_and_prints_its_usage doc_blocks::the_console_blocks_print_what_they_show tls::echo::a_mebibyte_comes_back_byte_exact_to_python_ssl"
    "openssl|openssl|tls::handshakes::openssl_s_client_is_echoed_over_1_2_and_1_3_and_refused_over_1_1 doc_blocks::the_console_blocks_print_what_they_show"
)
NEEDS_ROOT="files::a_full_disk_is_an_error_line_and_other_clients_go_on udp::datagrams_from_a_loop_port_get_no_answer"

has() { command -v "$1" > /dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
for entry in "${PROGRAMS[@]}"; do
    IFS='|' read -r program package _ <<< "$entry"
    has "$program" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" -eq 0 ]; then
    echo "scripts/test.sh: installing ${missing[*]} for the tests that drive them"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" > /dev/null; }; then
        echo "scripts/test.sh: could not install ${missing[*]}"
    fi
fi

skip=()
for entry in "${PROGRAMS[@]}"; do
    IFS='|' read -r program package tests <<< "$entry"
    has "$program" && continue
    for test in $tests; do
        echo "SKIPPED $test: needs $program (Debian package $package), not installed"
        skip+=(--skip "$test")
    done
done
if [ "$(id -u)" -ne 0 ]; then
    for test in $NEEDS_ROOT; do
        echo "SKIPPED $test: needs root"
        skip+=(--skip "$test")
    done
fi
cargo test "$@" -- --include-ignored "${skip[@]}"
