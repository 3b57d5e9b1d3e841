#!/usr/bin/env bash
# Suite 60-openclaw: the managed-openclaw role's gateway, as the NixOS unit starts it and as the
# stand-in image (scripts/lib/test-image-openclaw.sh: the REAL OpenClaw gateway from npm) runs it.
#
# - The unit, evaluated on the REAL nixpkgs lib and NixOS's Incus guest modules (the nixpkgs subset,
#   as suite 40-nix finds it): ExecStart, environment, PATH packages, address families, user,
#   restart policy, the path unit. A copy of the module without AF_NETLINK / without --port fails
#   these checks (so they can fail).
# - The stand-in against the real incusd, with no network device: its running gateway's command
#   line, environment, uid/gid, working directory and umask equal the unit's; /health answers
#   from inside the guest and through an Incus proxy device on loopback; the token gates
#   /tools/invoke; a rotated token is hot-reloaded; a killed gateway comes back (Restart=always);
#   the token appears in no log and no Incus config.
# - pika-server end to end on the stand-in (crates/pika-server/tests/gateway_openclaw.rs, the
#   `real_openclaw` tests that suite 10-rust skips): two agents' real gateways reached through their
#   proxies, token auth across agents, rotation, a killed gateway, a server restart, delete; and no
#   secret the test saw (tokens, the model key) in the test's own output.
# Without the subset the unit checks (and the comparison) are skipped and the suite says so.
set -euo pipefail

readonly SUITE="60-openclaw"
# shellcheck source=scripts/lib/nix-suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/nix-suite.sh"
readonly ROLE="managed-openclaw"
readonly UNIT="openclaw-gateway"
# How long the real gateway may take to answer /health (about 8 s on an idle machine; minutes
# when the machine's two cores are shared). Not a timing goal: bench.sh has those.
readonly HEALTH_TIMEOUT=600

# shellcheck source=scripts/lib/roles.sh
source "${REPO_ROOT}/scripts/lib/roles.sh"
# shellcheck source=scripts/lib/test-image-openclaw.sh
source "${REPO_ROOT}/scripts/lib/test-image-openclaw.sh"

PROJECT="${PIKA_TEST_PROJECT_PREFIX:-pika-test}-openclaw-$$"
WORK=""
SUBSET=""
MODULES=""
UNIT_JSON=""
OPENCLAW_IMAGE=""

# unit_eval DIR: the gateway's unit, path unit and user from DIR's role guest (real lib), as JSON.
unit_eval() {
  nix-instantiate --eval --strict --json "$1/tests/nix/guest-eval.nix" --arg nixpkgsLib "${SUBSET}/lib" \
    --arg modulesPath "${MODULES}" --argstr role "${ROLE}" --argstr instanceType container 2>"${WORK}/nix.stderr" \
    | jq -c --arg unit "${UNIT}" '{
        service: .services[$unit], unit: .units[$unit], pathUnit: .pathUnits[$unit],
        users, userIds, groupIds, failedAssertions }'
}

# unit_problems JSON: what is wrong with the unit (empty when nothing), against the role's facts
# from scripts/lib/roles.sh (the generated table: port and user are never typed here).
unit_problems() {
  local port="${PIKA_ROLE_SERVICE_PORT[${ROLE}]}" user
  IFS=: read -r -a user <<<"${PIKA_ROLE_USER[${ROLE}]}"
  jq -r --arg port "${port}" --arg name "${user[0]}" --argjson uid "${user[1]}" --arg group "${user[2]}" \
    --argjson gid "${user[3]}" '
    def want(what; have; expected): if have == expected then empty else "\(what): \(have | tojson), want \(expected | tojson)" end;
    .service as $s | .unit as $u | "/var/lib/openclaw/openclaw.json" as $config
    | want("ExecStart arguments"; $s.ExecStart | split(" ") | .[1:]; ["gateway", "--port", $port]),
      want("ExecStart program"; $s.ExecStart | split(" ") | .[0] | test("^/nix/store/[^/]+-payload-openclawGatewayPkg/bin/openclawGatewayPkg$"); true),
      want("RestrictAddressFamilies (AF_NETLINK: os.networkInterfaces())"; $s.RestrictAddressFamilies; ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]),
      want("Restart"; $s.Restart; "always"),
      want("RestartSec"; $s.RestartSec; 5),
      want("User/Group"; [$s.User, $s.Group]; [$name, $group]),
      want("uid/gid"; [.userIds[$name], .groupIds[$group]]; [$uid, $gid]),
      want("system user, home = state dir"; [.users[$name].isSystemUser, .users[$name].home]; [true, "/var/lib/openclaw"]),
      want("StateDirectory/WorkingDirectory"; [$s.StateDirectory, $s.WorkingDirectory]; ["openclaw", "/var/lib/openclaw"]),
      want("environment (but SHELL)"; $u.environment | del(.SHELL);
        {HOME: "/var/lib/openclaw", OPENCLAW_CONFIG_PATH: $config, OPENCLAW_NIX_MODE: "1", OPENCLAW_STATE_DIR: "/var/lib/openclaw"}),
      want("SHELL is bash"; $u.environment.SHELL | test("^/nix/store/[^/]+-bash/bin/bash$"); true),
      want("PATH packages (nix-openclaw: bash, coreutils)"; $u.path; ["bash", "coreutils", "payload-pikachatPkg"]),
      want("ConditionPathExists"; $u.unitConfig.ConditionPathExists; $config),
      want("path unit"; .pathUnit; {pathConfig: {PathExists: $config}, wantedBy: ["multi-user.target"]}),
      want("hardening kept"; [$s.ProtectSystem, $s.NoNewPrivileges, $s.UMask]; ["strict", true, "0077"]),
      want("failed assertions"; .failedAssertions; [])
  ' <<<"$1"
}

test_unit() {
  local problems
  UNIT_JSON="$(unit_eval "${REPO_ROOT}")" || { fail "the ${ROLE} guest does not evaluate: $(cat "${WORK}/nix.stderr")"; return; }
  problems="$(unit_problems "${UNIT_JSON}")"
  assert_eq "unit ${UNIT}: ExecStart, environment, PATH, address families, user, restart, path unit (real lib)" "" "${problems}"
}

# regressed DIR WHAT FILE SED_EXPR PROBLEM: the copy DIR of the repository with FILE (a path in it)
# edited by SED_EXPR, a unit WHAT, must fail the unit check PROBLEM; FILE is restored afterwards.
regressed() {
  local dir="$1" what="$2" file="$3" expr="$4" problem="$5" json
  sed -i "${expr}" "${dir}/${file}"
  if cmp -s "${REPO_ROOT}/${file}" "${dir}/${file}"; then
    fail "regression copy (${what})" "${expr} changed nothing in ${file}"
  elif ! json="$(unit_eval "${dir}")"; then
    fail "regression copy (${what}): $(cat "${WORK}/nix.stderr")"
  else
    expect "a unit ${what} fails the check" grep -q "^${problem}" <<<"$(unit_problems "${json}")"
  fi
  cp "${REPO_ROOT}/${file}" "${dir}/${file}"
}

# The unit checks fail on the defects they guard: a copy without AF_NETLINK, one without --port.
test_unit_regressions() {
  local dir="${WORK}/repo"
  mkdir -p "${dir}"
  (cd "${REPO_ROOT}" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "${dir}")
  regressed "${dir}" "without AF_NETLINK" nix/incus/roles/managed-openclaw.nix \
    's/ ++ \["AF_NETLINK"\]//' RestrictAddressFamilies
  regressed "${dir}" "without --port" nix/incus/roles/managed-openclaw-gateway.nix \
    's/args = \["gateway" "--port" (toString port)\];/args = ["gateway"];/' "ExecStart arguments"
}

# in_guest NAME CMD...: runs CMD in the stand-in.
in_guest() {
  local name="$1"
  shift
  incus exec "${name}" --project "${PROJECT}" -- "$@"
}

# gateway_pid NAME: the PID of the running gateway (its process title is openclaw-gateway).
gateway_pid() {
  # shellcheck disable=SC2016 # expanded in the guest
  in_guest "$1" sh -c 'for p in /proc/[0-9]*; do case "$(tr "\0" " " <"$p/cmdline" 2>/dev/null)" in openclaw-gateway*) echo "${p#/proc/}";; esac; done' | head -n1
}

# wait_health NAME: waits until GET /health answers inside the guest; prints the seconds it took.
wait_health() {
  local name="$1" start="${SECONDS}" port="${PIKA_ROLE_SERVICE_PORT[${ROLE}]}"
  while ((SECONDS - start < HEALTH_TIMEOUT)); do
    # `timeout`, not wget's -T: busybox 1.35's wget (Debian's busybox-static) segfaults with -T.
    if in_guest "${name}" timeout 5 wget -q -O - "http://127.0.0.1:${port}/health" >"${WORK}/health" 2>/dev/null; then
      echo "$((SECONDS - start))"
      return 0
    fi
    sleep 1
  done
  return 1
}

# config TOKEN: a minimal openclaw.json (the gateway's own schema).
config() {
  jq -cn --argjson port "${PIKA_ROLE_SERVICE_PORT[${ROLE}]}" --arg token "$1" \
    '{gateway: {mode: "local", port: $port, bind: "loopback", auth: {mode: "token", token: $token}}}'
}

# push_config NAME TOKEN: delivers the config as pika-server does (0600, owned by the role's user).
push_config() {
  local user
  IFS=: read -r -a user <<<"${PIKA_ROLE_USER[${ROLE}]}"
  config "$2" >"${WORK}/openclaw.json"
  incus file push "${WORK}/openclaw.json" "$1/var/lib/openclaw/openclaw.json" --project "${PROJECT}" \
    --mode 0600 --uid "${user[1]}" --gid "${user[3]}" -q
  rm -f "${WORK}/openclaw.json"
}

# invoke URL TOKEN: POST /tools/invoke with an empty body; prints the HTTP status and the body.
invoke() {
  curl -s -m 10 -X POST -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
    -w ' %{http_code}' "$1/tools/invoke" || true
}

# The running stand-in equals the unit: command line, environment, uid/gid, cwd, umask.
compare_with_unit() {
  local name="$1" pid="$2" argv environ status cwd umask_
  argv="$(in_guest "${name}" cat /run/pika-stand-in/openclaw-gateway.argv | jq -Rsc 'split("\n") | map(select(. != ""))')"
  assert_eq "stand-in command line = the unit's ExecStart (program: the payload's mainProgram, then the same arguments)" \
    "$(jq -c '.service.ExecStart | split(" ") | ["openclaw"] + .[1:]' <<<"${UNIT_JSON}")" \
    "$(jq -c '[.[0] | split("/") | last] + .[1:]' <<<"${argv}")"
  environ="$(in_guest "${name}" cat "/proc/${pid}/environ" | jq -Rsc 'split("\u0000") | map(select(. != "") | capture("^(?<key>[^=]*)=(?<value>.*)$")) | from_entries')"
  # systemd adds USER and LOGNAME for User= and PATH from `path`; /bin/sh (the payload's wrapper
  # script, in the Nix package too) adds PWD and SHLVL.
  assert_eq "stand-in environment = the unit's (SHELL and PATH: the image's bash and coreutils)" \
    "$(jq -cS '.unit.environment + {SHELL: "/bin/bash", PATH: "/bin", USER: .service.User, LOGNAME: .service.User}' <<<"${UNIT_JSON}")" \
    "$(jq -cS 'del(.PWD, .SHLVL)' <<<"${environ}")"
  status="$(in_guest "${name}" cat "/proc/${pid}/status")"
  assert_eq "stand-in uid/gid/groups/umask/no_new_privs = the unit's user, UMask and NoNewPrivileges" \
    "$(jq -r '.service.User as $u | .service.Group as $g | "\(.userIds[$u]) \(.groupIds[$g]) [] \(.service.UMask) 1"' <<<"${UNIT_JSON}")" \
    "$(awk '/^Uid:/ { u = $2 } /^Gid:/ { g = $2 } /^Groups:/ { gr = "[" $2 "]" } /^Umask:/ { m = $2 } /^NoNewPrivs:/ { n = $2 } END { print u, g, gr, m, n }' <<<"${status}")"
  cwd="$(in_guest "${name}" readlink "/proc/${pid}/cwd")"
  assert_eq "stand-in working directory = WorkingDirectory" "$(jq -r .service.WorkingDirectory <<<"${UNIT_JSON}")" "${cwd}"
  umask_="$(in_guest "${name}" stat -c '%a %u:%g' /var/lib/openclaw)"
  assert_eq "state directory owned by the role's user (StateDirectory=)" \
    "755 $(jq -r '.service.User as $u | .service.Group as $g | "\(.userIds[$u]):\(.groupIds[$g])"' <<<"${UNIT_JSON}")" "${umask_}"
}

test_stand_in() {
  local image name="gw" token rotated seconds url port pid newpid out
  image="$(test_image_openclaw)" || { fail "the stand-in image does not build"; return; }
  OPENCLAW_IMAGE="${image}"
  incus image import "${image}/metadata.tar.xz" "${image}/rootfs.squashfs" --alias openclaw-stand-in \
    --project "${PROJECT}" >/dev/null
  incus launch openclaw-stand-in "${name}" --project "${PROJECT}" >/dev/null 2>&1 \
    || { fail "the stand-in does not launch"; return; }
  assert_eq "the stand-in has no network device (only loopback inside)" "0 lo" \
    "$(incus query "/1.0/instances/${name}?project=${PROJECT}&recursion=1" | jq '[.expanded_devices[] | select(.type == "nic")] | length') $(in_guest "${name}" ls /sys/class/net | paste -sd' ')"
  sleep 3
  assert_eq "no gateway before the config is delivered (the path unit)" "" "$(gateway_pid "${name}")"

  token="$(openssl rand -hex 24)"
  push_config "${name}" "${token}"
  seconds="$(wait_health "${name}")" || { fail "/health did not answer within ${HEALTH_TIMEOUT} s: $(in_guest "${name}" tail -n 20 /var/log/openclaw-gateway.log)"; return; }
  log "the gateway answered /health ${seconds} s after its config was delivered"
  assert_eq "GET /health inside the guest" '{"ok":true,"status":"live"}' "$(cat "${WORK}/health")"
  pid="$(gateway_pid "${name}")"
  if [[ -n "${SUBSET}" ]]; then
    compare_with_unit "${name}" "${pid}"
  else
    log "SKIPPED: the stand-in/unit comparison (no nixpkgs subset)"
  fi

  port="$(free_port)"
  incus config device add "${name}" gateway proxy "listen=tcp:127.0.0.1:${port}" \
    "connect=tcp:127.0.0.1:${PIKA_ROLE_SERVICE_PORT[${ROLE}]}" --project "${PROJECT}" >/dev/null
  url="http://127.0.0.1:${port}"
  assert_eq "GET /health through the proxy device on loopback" '{"ok":true,"status":"live"}' "$(curl -s -m 10 "${url}/health")"
  out="$(invoke "${url}" wrong-token)"
  assert_eq "a wrong token is refused" "Unauthorized 401" "$(jq -r .error.message <<<"${out% *}") ${out##* }"
  out="$(invoke "${url}" "${token}")"
  assert_eq "the right token passes auth; an empty body is invalid_request" "invalid_request 400" "$(jq -r .error.type <<<"${out% *}") ${out##* }"

  # A rotated token: OpenClaw hot-reloads gateway.auth.token (no restart, same process).
  rotated="$(openssl rand -hex 24)"
  push_config "${name}" "${rotated}"
  local start="${SECONDS}" new old
  while ((SECONDS - start < 120)); do
    new="$(invoke "${url}" "${rotated}")" old="$(invoke "${url}" "${token}")"
    [[ "${new##* } ${old##* }" == "400 401" ]] && break
    sleep 1
  done
  assert_eq "a rotated token is applied without a restart (new passes, old refused, same process)" \
    "400 401 ${pid}" "${new##* } ${old##* } $(gateway_pid "${name}")"
  log "the rotated token took $((SECONDS - start)) s to apply"

  # Restart=always: a killed gateway comes back.
  in_guest "${name}" kill -9 "${pid}"
  seconds="$(wait_health "${name}")" || { fail "the killed gateway did not come back: $(in_guest "${name}" tail -n 20 /var/log/openclaw-gateway.log)"; return; }
  newpid="$(gateway_pid "${name}")"
  if [[ -n "${newpid}" && "${newpid}" != "${pid}" ]]; then
    pass "a killed gateway comes back (Restart=always), answering /health ${seconds} s later"
  else
    fail "after kill -9 ${pid} the gateway's pid is [${newpid}]"
  fi

  # Secrets: the tokens are in the delivered file only.
  if in_guest "${name}" sh -c 'cat /var/log/openclaw-gateway.log /tmp/openclaw/*.log 2>/dev/null' | grep -qF -e "${token}" -e "${rotated}" \
    || incus config show "${name}" --project "${PROJECT}" --expanded | grep -qF -e "${token}" -e "${rotated}"; then
    fail "a gateway token appears in the gateway's log or the Incus config"
  else
    pass "no gateway token in the gateway's logs or the Incus config"
  fi
  incus delete --force "${name}" --project "${PROJECT}" >/dev/null
}

# The `real_openclaw` tests of pika-server on the stand-in image; then grep their output for every
# secret they saw (they append each to PIKA_TEST_SECRETS_OUT). Lines holding a secret are never
# printed.
test_server_end_to_end() {
  local out="${WORK}/server-e2e.log" secrets="${WORK}/server-e2e.secrets"
  [[ -n "${OPENCLAW_IMAGE}" ]] || { fail "pika-server end to end: no stand-in image"; return; }
  (umask 077 && : >"${secrets}")
  if PIKA_TEST_OPENCLAW_IMAGE_DIR="${OPENCLAW_IMAGE}" PIKA_TEST_SECRETS_OUT="${secrets}" \
    cargo test --workspace --quiet --test gateway_openclaw -- --include-ignored real_openclaw >"${out}" 2>&1; then
    pass "pika-server end to end with the real gateway ($(grep -o '[0-9]* passed' "${out}" | tail -n1))"
  else
    fail "pika-server end to end with the real gateway: $(grep -vF -f "${secrets}" "${out}" | tail -n 40)"
  fi
  if [[ ! -s "${secrets}" ]]; then
    fail "the end-to-end test recorded no secrets to look for"
  elif grep -qF -f "${secrets}" "${out}"; then
    fail "a gateway token or model key is in the end-to-end test's output"
  else
    pass "none of the $(wc -l <"${secrets}") tokens and keys the end-to-end test saw is in its output"
  fi
  rm -f "${secrets}"
}

cleanup() {
  if incus project show "${PROJECT}" >/dev/null 2>&1; then
    incus delete --force gw --project "${PROJECT}" >/dev/null 2>&1 || true
    incus image delete openclaw-stand-in --project "${PROJECT}" >/dev/null 2>&1 || true
    incus project delete "${PROJECT}" >/dev/null 2>&1 || true
  fi
  [[ -n "${WORK}" ]] && rm -rf "${WORK}"
  return 0
}

main() {
  # npm fetches the payload (test.sh does not install Node); without it the suite cannot run.
  if [[ ! -d "${PIKA_TEST_OPENCLAW_IMAGE_DIR:-}" ]] && ! command -v npm >/dev/null; then
    err "npm is not installed: the stand-in's payload comes from the npm registry (or set PIKA_TEST_OPENCLAW_IMAGE_DIR)"
    exit 77
  fi
  WORK="$(mktemp -d "${PIKA_TEST_WORK:-/tmp}/openclaw.XXXXXX")"
  trap cleanup EXIT
  incus project create "${PROJECT}" -c features.images=true -c features.profiles=false >/dev/null
  SUBSET="$(find_subset)"
  if [[ -n "${SUBSET}" ]]; then
    make_modules_tree
    test_unit
    test_unit_regressions
  fi
  test_stand_in
  test_server_end_to_end
  [[ -n "${SUBSET}" ]] || log "SKIPPED (no nixpkgs subset: set PIKA_NIXPKGS_SUBSET): the unit checks and the stand-in/unit comparison"
  suite_report
}

main "$@"
