# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_echoloop_global_optspecs
    string join \n h/help V/version
end

function __fish_echoloop_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_echoloop_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_echoloop_using_subcommand
    set -l cmd (__fish_echoloop_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c echoloop -n "__fish_echoloop_needs_command" -s h -l help -d 'Print help'
complete -c echoloop -n "__fish_echoloop_needs_command" -s V -l version -d 'Print version'
complete -c echoloop -n "__fish_echoloop_needs_command" -f -a "serve" -d 'Run the server'
complete -c echoloop -n "__fish_echoloop_needs_command" -f -a "load" -d 'Generate load against a server and check every reply'
complete -c echoloop -n "__fish_echoloop_needs_command" -f -a "report" -d 'Add up the HdrHistogram logs of several `load --hdr-log` runs into one report'
complete -c echoloop -n "__fish_echoloop_needs_command" -f -a "client" -d 'Talk to a server: stdin lines go out, what the server sends is printed as it arrives'
complete -c echoloop -n "__fish_echoloop_needs_command" -f -a "put" -d 'Upload FILE to a `-p files` server, resuming where an interrupted upload stopped'
complete -c echoloop -n "__fish_echoloop_needs_command" -f -a "get" -d 'Download NAME from a `-p files` server, continuing a partial local file'
complete -c echoloop -n "__fish_echoloop_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -s l -l listen -d 'Stream listen address, repeatable: HOST:PORT, [V6]:PORT or unix:/path; PROTOCOL@ADDR serves PROTOCOL there instead of -p [default: 127.0.0.1:7007]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -s u -l udp -d 'Also serve over UDP at ADDR, repeatable; PROTOCOL@ADDR serves PROTOCOL there instead of -p' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -s p -l protocol -d 'The service, for every address without a PROTOCOL@ prefix' -r -f -a "echo\t'RFC 862: every byte comes back'
timestamp\t'The tutorial server: each read (raw framing, the default) or line (`--framing line`) comes back as `[<ctime>] <message>`'
daytime\t'RFC 867: one line with the date and time, then the server closes'
time\t'RFC 868: four bytes, the seconds since 1900 (big-endian), then the server closes'
discard\t'RFC 863: everything is read and dropped; nothing is sent'
chargen\t'RFC 864: an endless rotating pattern of characters, as fast as the client reads'
chat\t'A chat room: each line goes to every other client (`/nick`, `/who`, `/quit`)'
files\t'Uploads and downloads with resume, in one folder (`--dir`); the tutorial upload client too'"
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l framing -d 'How frames are cut [default: line for chat; raw for the others, one frame per read as the tutorial servers (timestamp: line to pipeline)]' -r -f -a "raw\t'Each read is one frame'
line\t'`\\n`-terminated lines (`\\r\\n` accepted)'
length\t'A 4-byte big-endian length, then that many bytes'"
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l max-frame -d 'Largest line or frame accepted (64K, 1M; a bare number is bytes)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l max-connections -d 'Connections held at once; one over it gets `error: server full` and is closed' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l idle-timeout -d 'Close a connection with no traffic for this long (30s, 5m; a bare number is seconds); 0 = never' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l queue-limit -d 'Per-client outbound queue limit: above it the client is not read until it drains (chat: dropped)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l greeting -d 'A line sent to each new stream client on connect' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l workers -d 'Single-threaded reactors sharing the port (SO_REUSEPORT; on macOS connections do not spread across them)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l shutdown-timeout -d 'On SIGINT/SIGTERM: stop accepting, flush queued output up to this long (500ms, 5s), exit 0' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l backlog -d 'Listen backlog' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l nodelay -d 'TCP_NODELAY on accepted sockets' -r -f -a "true\t''
false\t''"
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l keepalive -d 'TCP keepalive idle time on accepted sockets (30s, 2m); 0 = off' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l stats-interval -d 'Log a line of counters this often (10s, 1m); 0 = off (SIGUSR1 logs one at any time)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l metrics -d 'Serve Prometheus metrics at http://ADDR/metrics (TCP, same reactor), e.g. 127.0.0.1:9707' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l dir -d '-p files: the folder served (required; it must exist)' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l max-file-bytes -d '-p files: largest file accepted (512M, 1G; a bare number is bytes) [default: 1G]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l dir-quota -d '-p files: content bytes the folder may hold, partial files included (10G); 0 = no quota [default: 0]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l max-files -d '-p files: complete plus partial files the folder may hold [default: 100000]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l reservation-timeout -d '-p files: an upload\'s quota reservation ends after this long without a byte from it [default: 60s]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l partial-ttl -d '-p files: remove partial files untouched this long; 0 = keep them [default: 1d]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l max-memory -d 'Most bytes the connections\' buffers may hold, per worker; over it the biggest holders are not read (chat: dropped) and new connections get `error: server busy`' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l chat-rate -d '-p chat: lines per second per member, in bursts of twice that; a member over it is not read until it may send again (trusted sources exempt); 0 = off [default: 20]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l sndbuf -d 'SO_SNDBUF of accepted stream sockets, in bytes [default: the kernel\'s]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l rcvbuf -d 'SO_RCVBUF of accepted stream sockets, in bytes [default: the kernel\'s]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l udp-rcvbuf -d 'Receive buffer of each UDP socket, at least this many bytes: a bigger buffer rides out bursts instead of dropping them. The kernel caps it at net.core.rmem_max (a warning says so); one already bigger (systemd\'s ReceiveBuffer=) is kept [default: 4M]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l model -d 'How clients are served: one event-loop thread (reactor), or a blocking thread per connection (threaded)' -r -f -a "reactor\t'One thread, readiness events, non-blocking sockets (the reactor)'
threaded\t'One blocking thread per connection, for comparison'"
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l trusted -d 'Exempt from the per-source limits, repeatable; replaces the default 127.0.0.0/8 and ::1/128 (`none`: nobody)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l allow -d 'Serve only these sources, repeatable (default: everyone); --deny wins over it' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l deny -d 'Never serve these sources, repeatable: TCP closed at accept without a byte, UDP dropped' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l udp-rate-limit -d 'UDP replies per second per source /24 (IPv6 /56), burst as many; trusted exempt; 0 = off [default: 100]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l max-per-source -d 'Stream connections at once per source address (IPv6 /64), per worker; trusted exempt; 0 = off' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l accept-rate -d 'New stream connections per second per source address (IPv6 /64), burst 2 x N, per worker; trusted exempt; 0 = off' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l proxy-protocol -d 'Stream peers that speak the PROXY protocol (a load balancer), repeatable: CIDR, or `unix` for every Unix-socket peer; their connections must start with a v1 or v2 header within 5 s, whose address then counts as the client\'s' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l tls-cert -d 'The certificate chain of the tls: listeners, PEM (the server\'s certificate first); read again on SIGHUP' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l tls-key -d 'The private key of --tls-cert, PEM (PKCS#8, PKCS#1 or SEC1); read again on SIGHUP' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l tls-client-ca -d 'Require TLS clients to show a certificate signed by a CA in this PEM file' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l tls-handshake-timeout -d 'Close a TLS client whose handshake is not done in this long [default: 10s]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l reuse-port -d 'Set SO_REUSEPORT so that several echoloop processes can share the port (implied by --workers > 1)'
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -l trace -d 'Log every readiness event and every decision of the reactor (as RUST_LOG=echoloop=trace)'
complete -c echoloop -n "__fish_echoloop_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l tls-ca -d 'tls: trust the certificates in this PEM file instead of the system\'s roots' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -s c -l connections -d 'Connections (UDP: sockets) over all threads' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -s d -l duration -d 'How long to measure, after connecting and warmup (500ms, 30s, 2m; a bare number is seconds) [default: 10s, or no limit with -n]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -s n -l messages -d 'Stop after N replies in total (with -d: whichever comes first)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l warmup -d 'Traffic before the measurement starts, not counted (5s)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l timeout -d 'A reply later than this is a timeout; replies still owed at the end are waited for this long' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -s s -l size -d 'Payload bytes per message (64, 4K, 1M)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l payload-file -d 'Each message\'s payload from FILE (line framing: one message per line of the file, in turn)' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l pipeline -d 'Messages in flight per connection (timestamp: only with --framing line or length)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l rate -d 'Total messages per second over all connections: open loop (latency from intended send time)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l connect-rate -d 'New connections per second (ramp-up)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l threads -d 'Client reactors, one thread each [default: number of cores]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l framing -d 'How requests are framed and replies cut [default: raw; --protocol timestamp pipelines only with line or length, on both sides (serve --framing line)]' -r -f -a "raw\t'Each read is one frame'
line\t'`\\n`-terminated lines (`\\r\\n` accepted)'
length\t'A 4-byte big-endian length, then that many bytes'"
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l protocol -d 'What a correct reply looks like' -r -f -a "echo\t'The payload back, byte for byte'
timestamp\t'`[<ctime>] payload`: the tutorial timestamp server'
discard\t'Send only (RFC 863): nothing comes back; what counts is what the server accepts'
chargen\t'Receive only (RFC 864): nothing is sent; every byte is checked against the pattern'"
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l max-loss -d 'UDP: fail the run only if more than PCT percent of the datagrams are lost' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l percentiles -d 'Latency percentiles to report (JSON keys p50, p999, p9999)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l source-addrs -d 'Local addresses to spread connections over: 127.0.0.1-127.0.0.16, or a comma list' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l json-out -d 'Also write the JSON object to FILE (the summary still goes to stdout)' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l histogram -d 'Write the latency percentile distribution (HdrHistogram text, µs) to FILE' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l timeline -d 'Write one row per interval to FILE: CSV, or JSON lines if FILE ends in .jsonl' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l plot -d 'Draw throughput, p99 over time and the latency percentile curve into FILE.svg' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l interval -d 'Length of one row of the results over time (--timeline, --plot, --hdr-log)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l hdr-log -d 'Write the HdrHistogram interval log to FILE (for `echoloop report` and HdrHistogram tools)' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l reconnect-after -d 'Close each connection after N messages (their replies in) and connect again: churn' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l insecure -d 'tls: accept any server certificate (test certificates; the server is not authenticated)'
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l tls-resume -d 'tls: share one session cache, so that later handshakes resume (else each is full)'
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l udp -d 'Send datagrams to a UDP server instead (one message per datagram)'
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l json -d 'Print one JSON object on stdout instead of the summary'
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -l hold -d 'Open the connections, keep them idle for -d, report how many are up'
complete -c echoloop -n "__fish_echoloop_using_subcommand load" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c echoloop -n "__fish_echoloop_using_subcommand report" -l json-out -d 'Also write the JSON object to FILE (the summary still goes to stdout)' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand report" -l histogram -d 'Write the latency percentile distribution (HdrHistogram text, µs) to FILE' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand report" -l timeline -d 'Write one row per interval to FILE: CSV, or JSON lines if FILE ends in .jsonl' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand report" -l plot -d 'Draw throughput, p99 over time and the latency percentile curve into FILE.svg' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand report" -l json -d 'Print one JSON object on stdout instead of the summary'
complete -c echoloop -n "__fish_echoloop_using_subcommand report" -s h -l help -d 'Print help'
complete -c echoloop -n "__fish_echoloop_using_subcommand client" -l tls-ca -d 'tls: trust the certificates in this PEM file instead of the system\'s roots' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand client" -l udp -d 'Send each stdin line as one UDP datagram (without its newline)'
complete -c echoloop -n "__fish_echoloop_using_subcommand client" -l insecure -d 'tls: accept any server certificate (test certificates; the server is not authenticated)'
complete -c echoloop -n "__fish_echoloop_using_subcommand client" -s h -l help -d 'Print help'
complete -c echoloop -n "__fish_echoloop_using_subcommand put" -l tls-ca -d 'tls: trust the certificates in this PEM file instead of the system\'s roots' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand put" -l name -d 'The name on the server [default: FILE\'s own name]' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand put" -l retries -d 'Reconnect this many times after a dropped connection (or `error: busy`)' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand put" -l insecure -d 'tls: accept any server certificate (test certificates; the server is not authenticated)'
complete -c echoloop -n "__fish_echoloop_using_subcommand put" -s h -l help -d 'Print help'
complete -c echoloop -n "__fish_echoloop_using_subcommand get" -l tls-ca -d 'tls: trust the certificates in this PEM file instead of the system\'s roots' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand get" -s o -l output -d 'Where to write it [default: NAME in the current folder]' -r -F
complete -c echoloop -n "__fish_echoloop_using_subcommand get" -l retries -d 'Reconnect this many times after a dropped connection' -r
complete -c echoloop -n "__fish_echoloop_using_subcommand get" -l insecure -d 'tls: accept any server certificate (test certificates; the server is not authenticated)'
complete -c echoloop -n "__fish_echoloop_using_subcommand get" -s h -l help -d 'Print help'
complete -c echoloop -n "__fish_echoloop_using_subcommand help; and not __fish_seen_subcommand_from serve load report client put get help" -f -a "serve" -d 'Run the server'
complete -c echoloop -n "__fish_echoloop_using_subcommand help; and not __fish_seen_subcommand_from serve load report client put get help" -f -a "load" -d 'Generate load against a server and check every reply'
complete -c echoloop -n "__fish_echoloop_using_subcommand help; and not __fish_seen_subcommand_from serve load report client put get help" -f -a "report" -d 'Add up the HdrHistogram logs of several `load --hdr-log` runs into one report'
complete -c echoloop -n "__fish_echoloop_using_subcommand help; and not __fish_seen_subcommand_from serve load report client put get help" -f -a "client" -d 'Talk to a server: stdin lines go out, what the server sends is printed as it arrives'
complete -c echoloop -n "__fish_echoloop_using_subcommand help; and not __fish_seen_subcommand_from serve load report client put get help" -f -a "put" -d 'Upload FILE to a `-p files` server, resuming where an interrupted upload stopped'
complete -c echoloop -n "__fish_echoloop_using_subcommand help; and not __fish_seen_subcommand_from serve load report client put get help" -f -a "get" -d 'Download NAME from a `-p files` server, continuing a partial local file'
complete -c echoloop -n "__fish_echoloop_using_subcommand help; and not __fish_seen_subcommand_from serve load report client put get help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
