/** What the controller bakes into `/install.sh` when it serves it. */
export interface InstallScriptFacts {
  /** The web listener as nodes reach it, e.g. https://10.0.0.1:7080. */
  readonly baseUrl: string;
  /** curl's TLS options for that listener: empty on loopback, the pinned key of its certificate off it. */
  readonly curlTls: string;
  /** The agents' join address: the advertised cluster gRPC address. */
  readonly clusterAddress: string;
  /** sha256 hex of the `/corral.tgz` being served now. */
  readonly packageSha256: string;
  readonly version: string;
  readonly controllerName: string;
}

/** A value as one single-quoted sh word. */
export function shQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * The one-line join's script (POSIX sh): it trusts nothing it downloads until checked — the CA against
 * the fingerprint inside the token, the token with the controller, the package against the digest baked
 * in here — before it installs anything, and leaves nothing running when it fails.
 */
export function renderInstallScript(facts: InstallScriptFacts): string {
  return `#!/bin/sh
# Installs corral ${facts.version} on this node and starts its agent, joined to the controller
# ${JSON.stringify(facts.controllerName)}. Written by that controller; run it as
#   curl -fsSL <controller web>/install.sh | sh -s -- --token <join token>
set -eu

CORRAL_URL=${shQuote(facts.baseUrl)}
CORRAL_CURL_TLS=${shQuote(facts.curlTls)}
CORRAL_CLUSTER=${shQuote(facts.clusterAddress)}
CORRAL_SHA256=${shQuote(facts.packageSha256)}
CORRAL_VERSION=${shQuote(facts.version)}

usage() {
  cat <<'EOF'
usage: sh install.sh --token <join token> [options] [-- <corral up flags>]
  --token <token>     a join token (corral token create on the controller)
  --no-service        run the agent in the background (nohup) instead of installing its systemd unit
  --prefix <dir>      where npm installs corral (default /usr/local: /usr/local/bin/corral)
  --data-dir <dir>    the agent's data dir, and where agent.yaml goes (default: /var/lib/corral/agent,
                      agent.yaml in /etc/corral)
  --name <name>       the node's name (default: the host name)
  --offline           npm installs from its cache only (air-gapped sites)
  --no-native         skip native builds (npm --ignore-scripts): no compiler needed; the agent runs without
                      the optional I2C/SPI bindings (simulated or sysfs devices), a controller needs them
EOF
}

die() {
  printf 'corral install: %s\\n' "$*" >&2
  exit 1
}

token=""
service=1
prefix=/usr/local
data_dir=""
name=""
offline=""
scripts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --token) [ $# -ge 2 ] || die "--token needs a value"; token=$2; shift 2 ;;
    --token=*) token=\${1#*=}; shift ;;
    --no-service) service=0; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --data-dir) [ $# -ge 2 ] || die "--data-dir needs a directory"; data_dir=$2; shift 2 ;;
    --name) [ $# -ge 2 ] || die "--name needs a value"; name=$2; shift 2 ;;
    --offline) offline=--offline; shift ;;
    --no-native) scripts=--ignore-scripts; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (sh install.sh --help lists them)" ;;
  esac
done
[ -n "$token" ] || die "--token is required: run corral token create on the controller for one"
ca_hex=$(printf '%s\\n' "$token" | sed -n 's/^corral1\\.\\([0-9a-f]\\{64\\}\\)\\.[0-9a-z]\\{12\\}\\.[A-Za-z0-9_-]\\{43\\}$/\\1/p')
[ -n "$ca_hex" ] || die "that is not a corral join token (corral1.<ca sha256>.<id>.<secret>)"

command -v node >/dev/null 2>&1 || die "Node.js 20 or newer is needed, and node is not on PATH"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] 2>/dev/null || die "Node.js 20 or newer is needed; this is $(node --version)"
command -v npm >/dev/null 2>&1 || die "npm is needed (it comes with Node.js)"
command -v curl >/dev/null 2>&1 || die "curl is needed"

work=$(mktemp -d)
agent_pid=""
cleanup() {
  # Whatever failed, no agent of ours is left running.
  if [ -n "$agent_pid" ]; then
    kill "$agent_pid" 2>/dev/null || true
    rm -f "$pid_file"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# shellcheck disable=SC2086 # CORRAL_CURL_TLS is several words on purpose
fetch() {
  curl -fsS $CORRAL_CURL_TLS -o "$2" "$CORRAL_URL$1" || die "cannot download $CORRAL_URL$1"
}
sha256_of() {
  node -e 'const h=require("node:crypto").createHash("sha256");h.update(require("node:fs").readFileSync(process.argv[1]));process.stdout.write(h.digest("hex"))' "$1"
}

# 1. The controller's CA, before anything else: it must be the one the token names.
fetch /ca.pem "$work/ca.pem"
got=$(node -e 'const {X509Certificate}=require("node:crypto");process.stdout.write(new X509Certificate(require("node:fs").readFileSync(process.argv[1])).fingerprint256.replace(/:/g,"").toLowerCase())' "$work/ca.pem") ||
  die "$CORRAL_URL/ca.pem is not a certificate"
[ "$got" = "$ca_hex" ] ||
  die "the controller's CA is sha256:$got, but the token is for sha256:$ca_hex: refusing (wrong controller, or someone in between; check the address, or make a token on this controller)"

# 2. The token, before npm spends minutes: the controller says whether it would admit this node.
printf 'authorization: Bearer %s\\n' "$token" >"$work/auth"
# shellcheck disable=SC2086
status=$(curl -sS $CORRAL_CURL_TLS -o "$work/check" -w '%{http_code}' -X POST -H @"$work/auth" "$CORRAL_URL/install/token-check") ||
  die "cannot reach $CORRAL_URL to check the token"
[ "$status" = 204 ] || die "the controller refused the token: $(cat "$work/check")"

# 3. The package, checked against the digest this script was written with.
fetch /corral.tgz "$work/corral-$CORRAL_VERSION.tgz"
sum=$(sha256_of "$work/corral-$CORRAL_VERSION.tgz")
[ "$sum" = "$CORRAL_SHA256" ] ||
  die "the package's sha256 is $sum, not $CORRAL_SHA256 as install.sh says: refusing to install it (it changed since install.sh was fetched; fetch install.sh again)"
echo "corral install: installing corral $CORRAL_VERSION into $prefix (npm install -g $offline $scripts)"
# shellcheck disable=SC2086 # empty options vanish
npm install -g --prefix "$prefix" $offline $scripts --no-fund --no-audit "$work/corral-$CORRAL_VERSION.tgz" >"$work/npm.log" 2>&1 ||
  { tail -n 20 "$work/npm.log" >&2; die "npm install failed (above: its last lines)"; }
corral="$prefix/bin/corral"
[ -x "$corral" ] || die "npm installed no $corral"

# 4. The agent's config: the controller's address, the token, the CA it pins.
if [ -n "$data_dir" ]; then conf_dir=$data_dir; else data_dir=/var/lib/corral/agent; conf_dir=/etc/corral; fi
yq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
umask 077
mkdir -p "$conf_dir" "$data_dir" || die "cannot make $conf_dir and $data_dir"
conf="$conf_dir/agent.yaml"
{
  echo "# Written by corral's install script; corral up --config $conf"
  echo "join: $(yq "$CORRAL_CLUSTER")"
  echo "token: $(yq "$token")"
  echo "caFingerprint: $(yq "sha256:$ca_hex")"
  echo "dataDir: $(yq "$data_dir")"
  [ -z "$name" ] || echo "name: $(yq "$name")"
} >"$conf" || die "cannot write $conf"
chmod 600 "$conf"
echo "corral install: wrote $conf"

# 5. Run it: as a systemd unit, or in the background until it has joined.
if [ "$service" = 1 ]; then
  "$corral" service install agent --config "$conf" --data-dir "$data_dir" -- "$@" ||
    die "could not install the agent's unit (run as root, or use --no-service)"
  echo "corral install: the agent runs as corral-agent.service (journalctl -u corral-agent -f)"
  exit 0
fi
pid_file="$data_dir/agent.pid"
log="$data_dir/agent.log"
if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  die "an agent already runs with $data_dir (pid $(cat "$pid_file")); stop it first"
fi
nohup "$corral" up --config "$conf" "$@" >"$log" 2>&1 </dev/null &
agent_pid=$!
echo "$agent_pid" >"$pid_file"
tries=0
# A first start logs "joined the cluster"; a data dir that joined before, "connected to the controller".
while ! grep -qE '"msg":"(joined the cluster|connected to the controller)"' "$log" 2>/dev/null; do
  if ! kill -0 "$agent_pid" 2>/dev/null; then
    tail -n 20 "$log" >&2
    agent_pid=""
    rm -f "$pid_file"
    die "the agent stopped before it joined (above: the end of $log)"
  fi
  tries=$((tries + 1))
  [ "$tries" -le 120 ] || { tail -n 20 "$log" >&2; die "the agent did not join within 60 s (above: the end of $log); stopped it"; }
  sleep 0.5
done
echo "corral install: the agent (pid $agent_pid) joined $CORRAL_CLUSTER; log $log, pid file $pid_file"
agent_pid=""
`;
}
