#!/usr/bin/env bash
# Suite 50-image-script: scripts/incus-role-image.sh and its legacy wrappers, against the real incusd
# that scripts/test.sh starts. Run alone: scripts/test.sh --no-setup 50-image-script
#
# Stubs, and why: `nix build` (nixpkgs cannot be fetched here) is replaced by
# lib-image-script/nix-stub through PIKA_IMAGE_NIX; ssh (no second host or sshd here) by
# lib-image-script/fake-ssh through PIKA_IMAGE_SSH, which runs the command line through `bash -c`
# exactly as sshd hands it to the login shell. Everything Incus does is real. The Incus side runs in
# pika-guest (built here with cargo and handed to the script through PIKA_GUEST); a second Incus
# project stands in for a second host.
set -Eeuo pipefail
shopt -s inherit_errexit
# A command failing outside a check aborts the suite: say where.
trap 'echo "50-image-script: error: aborted at line ${LINENO}: ${BASH_COMMAND}" >&2' ERR

REPO="${REPO_ROOT:-$(pwd)}"
readonly REPO
readonly SCRIPT="${REPO}/scripts/incus-role-image.sh"
readonly HELPERS="${REPO}/scripts/tests/lib-image-script"
readonly NIX_STUB="${HELPERS}/nix-stub"
readonly FAKE_SSH="${HELPERS}/fake-ssh"
readonly HTTPS_STATIC="${HELPERS}/https-static"
readonly PROJECT_PREFIX="${PIKA_TEST_PROJECT_PREFIX:-pika-test}-imgscript-$$"
WORK="${PIKA_TEST_WORK:?run through scripts/test.sh}/image-script"
readonly WORK

# shellcheck source=scripts/lib/roles.sh
source "${REPO}/scripts/lib/roles.sh"
# shellcheck source=scripts/lib/test-image.sh
source "${REPO}/scripts/lib/test-image.sh"
# shellcheck source=scripts/lib/test-env.sh
source "${REPO}/scripts/lib/test-env.sh"
readonly SUITE="50-image-script"
# shellcheck source=scripts/lib/suite.sh
source "${REPO}/scripts/lib/suite.sh"

PROJECT_COUNT=0
# The HTTPS server and incusd's cache of it (t_simplestreams), removed at exit.
SERVER_PID=""
SERVER_CACHE=""
NEW_PROJECT=""
# Set by old_imported.
ALIAS=""
OLD_FP=""
NEW_FP=""
# Set by run: exit status, stdout and stderr of the last script run.
RC=0
OUT=""
ERR_TEXT=""

# run COMMAND...: runs it with stdin closed, stores RC, OUT and ERR_TEXT.
run() {
  local out_file="${WORK}/run.out" err_file="${WORK}/run.err"
  RC=0
  "$@" </dev/null >"${out_file}" 2>"${err_file}" || RC=$?
  OUT="$(cat "${out_file}")"
  ERR_TEXT="$(cat "${err_file}")"
}

# new_project [CONFIG...]: creates a fresh Incus project, named in NEW_PROJECT.
new_project() {
  PROJECT_COUNT=$((PROJECT_COUNT + 1))
  NEW_PROJECT="${PROJECT_PREFIX}-${PROJECT_COUNT}"
  incus project create "${NEW_PROJECT}" "$@" >/dev/null
}

# fingerprint DIR: what Incus computes for a split image (sha256 of metadata, then rootfs or disk).
fingerprint() {
  local dir="$1" payload="$1/rootfs.squashfs" sum
  [[ -f "${payload}" ]] || payload="${dir}/disk.qcow2"
  sum="$(cat "${dir}/metadata.tar.xz" "${payload}" | sha256sum)"
  echo "${sum%% *}"
}

# alias_fp PROJECT ALIAS: the alias's target fingerprint, or "MISSING".
alias_fp() {
  local json
  if json="$(incus query "/1.0/images/aliases/${2//\//%2F}?project=$1" 2>/dev/null)"; then
    jq -r .target <<<"${json}"
  else
    echo "MISSING"
  fi
}

image_present() {
  incus query "/1.0/images/$2?project=$1" >/dev/null 2>&1
}

image_count() {
  incus query "/1.0/images?project=$1" | jq length
}

# big_image DIR MARKER [ROLE]: a container image of ~48 MiB (incompressible filler), so an import
# takes long enough for the polling test to observe it.
big_image() {
  local out="$1" marker="$2" role="${3:-${PIKA_ROLE_IDS[0]}}" tmp
  tmp="$(mktemp -d "${WORK}/big.XXXXXX")"
  mkdir -p "${out}"
  test_image_rootfs "${tmp}/rootfs" "${marker}"
  head -c 48M /dev/urandom >"${tmp}/rootfs/filler"
  mksquashfs "${tmp}/rootfs" "${out}/rootfs.squashfs" -noappend -quiet -all-root -comp gzip >/dev/null
  test_image_metadata "${out}" "pika big test image" "test-container" "${marker}" "${role}"
  rm -rf "${tmp}"
}

t_shellcheck() {
  expect "shellcheck -x is clean on the dispatcher, the wrappers, this suite and its helpers" \
    shellcheck -x "${SCRIPT}" "${REPO}/scripts/incus-dev-image.sh" "${REPO}/scripts/pikaci-incus-image.sh" \
    "${BASH_SOURCE[0]}" "${NIX_STUB}" "${FAKE_SSH}"
}

t_help() {
  run "${SCRIPT}" --help
  local role missing=()
  for role in "${PIKA_ROLE_IDS[@]}"; do
    contains "${OUT}" "${role}" && contains "${OUT}" "${PIKA_ROLE_DEFAULT_ALIAS[${role}]}" || missing+=("${role}")
  done
  expect "--help exits 0 and lists every registry role with its alias (missing: ${missing[*]:-none})" \
    test "${RC}" -eq 0 -a "${#missing[@]}" -eq 0
}

# usage_case EXPECTED_SUBSTRING ARGS...: exit 2 with the message on stderr. The script checks only
# what it handles itself (subcommand, --local); pika-guest's parser checks every option.
usage_case() {
  local want="$1"
  shift
  run "${SCRIPT}" "$@"
  if [[ "${RC}" -eq 2 ]] && contains "${ERR_TEXT}" "${want}"; then
    pass "exit 2 with '${want}' for: $*"
  else
    fail "exit 2 with '${want}' for: $*" "got ${RC}: ${ERR_TEXT%%$'\n'*}"
  fi
}

t_usage_errors() {
  local all_roles first="${PIKA_ROLE_IDS[0]}"
  all_roles="$(printf '%s, ' "${PIKA_ROLE_IDS[@]}")"
  all_roles="${all_roles%, }"
  usage_case "unknown Incus guest role \`no-such-role\`; valid roles: ${all_roles}" --role no-such-role import --local
  usage_case "unknown role 'no-such-role' (--role); valid roles:" --role no-such-role build
  usage_case "--role <ROLE>" import --local
  usage_case "unknown subcommand frobnicate" --role "${first}" frobnicate
  usage_case "missing subcommand" --role "${first}"
  usage_case "unexpected argument '--bogus'" --role "${first}" import --bogus
  usage_case "--project needs a value" --role "${first}" import --project
  usage_case "invalid alias 'a//b'" --role "${first}" import --local --alias a//b
  usage_case "invalid alias 'x/../y'" --role "${first}" import --local --alias x/../y
  usage_case "invalid alias 'ok" --role "${first}" import --local --alias $'ok\n;touch /tmp/x'
  usage_case "invalid --remote-host '-oProxyCommand=x'" --role "${first}" import --remote-host -oProxyCommand=x
  usage_case "invalid --remote-host 'host;id'" --role "${first}" import --remote-host 'host;id'
  usage_case "--local and --remote-host exclude each other" --role "${first}" import --local --remote-host h
  usage_case "unexpected argument '--artifact'" --role "${first}" build-import --local --artifact x
  usage_case "build takes only --role" --role "${first}" build --project p
  usage_case "invalid value '0' for '--keep" --role "${first}" import --local --keep 0
  usage_case "unexpected argument '--to'" --role "${first}" import --local --to abcd
  usage_case "unexpected argument '--keep'" --role "${first}" status --local --keep 2
  usage_case "unexpected argument '--artifact'" --role "${first}" rollback --local --artifact x
  usage_case "invalid --remote-host 'a;b'" --role "${first}" status --remote-host ok --remote-host 'a;b'
  run "${PIKA_GUEST}" image import --role no-such-role
  expect "pika-guest: an unknown role exits 2 listing the registry's roles (${ERR_TEXT%%$'\n'*})" \
    test "${RC}" -eq 2 -a -n "$(contains "${ERR_TEXT}" "valid roles: ${all_roles}" && echo y)"
  run "${PIKA_GUEST}" image import --role "${first}" --alias 'a//b'
  expect "pika-guest: an invalid alias exits 2 with the registry's reason" \
    test "${RC}" -eq 2 -a -n "$(contains "${ERR_TEXT}" "segments are separated by single" && echo y)"
  run "${PIKA_GUEST}" image status --all --role "${first}"
  expect "pika-guest: status --all with --role exits 2" test "${RC}" -eq 2
  run "${PIKA_GUEST}" image status --role "${first}" --project "${PROJECT_PREFIX}-absent" --artifact "${PIKA_TEST_IMAGE_DIR}/vm"
  expect "pika-guest: a missing project is named (${ERR_TEXT%%$'\n'*})" \
    test "${RC}" -eq 1 -a -n "$(contains "${ERR_TEXT}" "project ${PROJECT_PREFIX}-absent (--project) is not available" && echo y)"
}

# Each role imports the VM image under its default alias and the container image under a second one.
t_import_each_role() {
  local role project vm_fp ct_fp alias
  for role in "${PIKA_ROLE_IDS[@]}"; do
    test_image_vm "${WORK}/vm-${role}" "vm of ${role}" "vm-${role}" "${role}"
    test_image_container "${WORK}/ct-${role}" "container of ${role}" "ct-${role}" "${role}"
    vm_fp="$(fingerprint "${WORK}/vm-${role}")"
    ct_fp="$(fingerprint "${WORK}/ct-${role}")"
    new_project
    project="${NEW_PROJECT}"
    alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
    run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/vm-${role}"
    expect "${role}: VM image imported under default alias ${alias} (${vm_fp:0:12})" \
      test "${RC}" -eq 0 -a "$(alias_fp "${project}" "${alias}")" == "${vm_fp}"
    expect "${role}: the imported image is a virtual-machine image" \
      test "$(incus query "/1.0/images/${vm_fp}?project=${project}" | jq -r .type)" == virtual-machine
    run "${SCRIPT}" import --local --project "${project}" --alias "${alias}-ct" \
      --artifact "${WORK}/ct-${role}" --role "${role}"
    expect "${role}: container image imported under ${alias}-ct (--role after the subcommand)" \
      test "${RC}" -eq 0 -a "$(alias_fp "${project}" "${alias}-ct")" == "${ct_fp}"
    expect "${role}: importing a payload other than the role's instance type says so" \
      contains "${ERR_TEXT}" "holds rootfs.squashfs"
  done
}

t_reimport_identical() {
  local project role="${PIKA_ROLE_IDS[0]}" fp before
  new_project
  project="${NEW_PROJECT}"
  fp="$(fingerprint "${PIKA_TEST_IMAGE_DIR}/container")"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${PIKA_TEST_IMAGE_DIR}/container"
  before="$(image_count "${project}")"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${PIKA_TEST_IMAGE_DIR}/container"
  expect "re-importing an identical image succeeds as a no-op (exit ${RC}, ${before} image)" \
    test "${RC}" -eq 0 -a "$(image_count "${project}")" -eq "${before}" -a "${before}" -eq 1 \
    -a "$(alias_fp "${project}" "${PIKA_ROLE_DEFAULT_ALIAS[${role}]}")" == "${fp}"
  expect "the no-op says nothing to do" contains "${ERR_TEXT}" "nothing to do"
}

# old_imported ROLE OLD_DIR NEW_DIR: a new project (NEW_PROJECT) where the script imported the
# image in OLD_DIR for ROLE (checked: the role's alias, ALIAS, is on it); OLD_FP and NEW_FP are the
# fingerprints of OLD_DIR and of NEW_DIR, which is not imported.
old_imported() {
  local role="$1"
  ALIAS="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  OLD_FP="$(fingerprint "$2")"
  NEW_FP="$(fingerprint "$3")"
  new_project
  run "${SCRIPT}" --role "${role}" import --local --project "${NEW_PROJECT}" --artifact "$2"
  expect "first import puts ${ALIAS} on the old image" test "$(alias_fp "${NEW_PROJECT}" "${ALIAS}")" == "${OLD_FP}"
}

# Poll the alias while a changed image is imported: every poll resolves to the old or new image.
t_swap_while_polling() {
  local role="${PIKA_ROLE_IDS[1]:-${PIKA_ROLE_IDS[0]}}" pid seen
  local polls=0 saw_old=0 saw_new=0 bad=0 went_back=0 rc=0
  big_image "${WORK}/big-old" "old-$$" "${role}"
  big_image "${WORK}/big-new" "new-$$" "${role}"
  old_imported "${role}" "${WORK}/big-old" "${WORK}/big-new"
  local project="${NEW_PROJECT}" alias="${ALIAS}" old_fp="${OLD_FP}" new_fp="${NEW_FP}"

  "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/big-new" \
    >"${WORK}/poll.out" 2>&1 &
  pid=$!
  while kill -0 "${pid}" 2>/dev/null; do
    seen="$(alias_fp "${project}" "${alias}")"
    polls=$((polls + 1))
    case "${seen}" in
      "${old_fp}") saw_old=$((saw_old + 1)); ((saw_new == 0)) || went_back=1 ;;
      "${new_fp}") saw_new=$((saw_new + 1)) ;;
      *) bad=$((bad + 1)); echo "  poll ${polls}: alias resolved to ${seen}" >&2 ;;
    esac
  done
  wait "${pid}" || rc=$?
  expect "import with swap exits 0 while polled" test "${rc}" -eq 0
  expect "${polls} polls during the import all resolved the alias (old ${saw_old}, new ${saw_new}, other ${bad})" \
    test "${bad}" -eq 0 -a "${polls}" -ge 2 -a "${saw_old}" -ge 1
  expect "the alias never went back to the old image once moved" test "${went_back}" -eq 0
  expect "afterwards the alias points at the new image" test "$(alias_fp "${project}" "${alias}")" == "${new_fp}"
  expect "the old image stays reachable as a version of the alias" \
    test -n "$(incus query "/1.0/images/${old_fp}?project=${project}" | jq -r --arg a "${alias}/v" '.aliases[].name | select(startswith($a))')"
}

# The previous image stays when another alias still points at it.
t_keep_referenced_image() {
  local role="${PIKA_ROLE_IDS[0]}"
  test_image_container "${WORK}/keep-old" "keep old" "keep-old-$$"
  test_image_container "${WORK}/keep-new" "keep new" "keep-new-$$"
  old_imported "${role}" "${WORK}/keep-old" "${WORK}/keep-new"
  local project="${NEW_PROJECT}" alias="${ALIAS}" old_fp="${OLD_FP}" new_fp="${NEW_FP}"
  incus image alias create --project "${project}" pinned/by-hand "${old_fp}" >/dev/null
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/keep-new"
  expect "alias moved to the new image while another alias holds the old one" \
    test "${RC}" -eq 0 -a "$(alias_fp "${project}" "${alias}")" == "${new_fp}"
  expect "the old image is kept because pinned/by-hand still points at it" image_present "${project}" "${old_fp}"
}

t_corrupt_artifact() {
  local project role="${PIKA_ROLE_IDS[0]}" alias fp count
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  new_project
  project="${NEW_PROJECT}"
  fp="$(fingerprint "${PIKA_TEST_IMAGE_DIR}/container")"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${PIKA_TEST_IMAGE_DIR}/container"
  count="$(image_count "${project}")"
  mkdir -p "${WORK}/corrupt"
  cp "${PIKA_TEST_IMAGE_DIR}/container/rootfs.squashfs" "${WORK}/corrupt/"
  head -c 4096 /dev/urandom >"${WORK}/corrupt/metadata.tar.xz"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/corrupt"
  expect "corrupt metadata: exit 1" test "${RC}" -eq 1
  expect "corrupt metadata: the message names the file and says nothing was imported (${ERR_TEXT##*error: })" \
    contains "${ERR_TEXT}" "corrupt/metadata.tar.xz: not a whole xz file"
  expect "corrupt metadata: ... and that the alias is unchanged" \
    contains "${ERR_TEXT}" "nothing imported, alias ${alias} unchanged"
  expect "corrupt metadata: the alias still points at the old image" \
    test "$(alias_fp "${project}" "${alias}")" == "${fp}"
  expect "corrupt metadata: no image was added" test "$(image_count "${project}")" -eq "${count}"

  mkdir -p "${WORK}/no-payload"
  cp "${PIKA_TEST_IMAGE_DIR}/container/metadata.tar.xz" "${WORK}/no-payload/"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/no-payload"
  expect "artifact without disk/rootfs: exit 1" test "${RC}" -eq 1
  expect "artifact without disk/rootfs: the message names both expected files" \
    contains "${ERR_TEXT}" "neither disk.qcow2 (virtual machine) nor rootfs.squashfs (container)"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/does-not-exist"
  expect "missing artifact directory: exit 1" test "${RC}" -eq 1
  expect "missing artifact directory: the message names it" contains "${ERR_TEXT}" "${WORK}/does-not-exist"
}

# Deliberate pins: the wrappers' role IDs are the compatibility contract being tested.
t_legacy_wrappers() {
  local wrapper role project pair
  for pair in "incus-dev-image.sh managed-openclaw" "pikaci-incus-image.sh pikaci-runner"; do
    wrapper="${pair%% *}"
    role="${pair#* }"
    run env PIKA_IMAGE_NIX="${NIX_STUB}" PIKA_NIX_STUB_RECORD="${WORK}/wrapper.record" \
      "${REPO}/scripts/${wrapper}" build
    expect "${wrapper} build runs nix build .#packages.${PIKA_ROLE_SYSTEM[${role}]}.${PIKA_ROLE_PACKAGE[${role}]}" \
      grep -qxF "argv: build --out-link result .#packages.${PIKA_ROLE_SYSTEM[${role}]}.${PIKA_ROLE_PACKAGE[${role}]}" \
      "${WORK}/wrapper.record"
    new_project
    project="${NEW_PROJECT}"
    test_image_vm "${WORK}/wrapper-${role}" "wrapper ${role}" "wrapper-${role}" "${role}"
    run "${REPO}/scripts/${wrapper}" import --local --project "${project}" --artifact "${WORK}/wrapper-${role}"
    expect "${wrapper} import lands on ${role}'s default alias ${PIKA_ROLE_DEFAULT_ALIAS[${role}]}" \
      test "$(alias_fp "${project}" "${PIKA_ROLE_DEFAULT_ALIAS[${role}]}")" == "$(fingerprint "${WORK}/wrapper-${role}")"
  done
}

# A temp git repo with a tracked, an untracked and an ignored file.
make_git_tree() {
  local dir="$1"
  mkdir -p "${dir}/sub"
  git -C "${dir}" init -q
  printf 'ignored.txt\n' >"${dir}/.gitignore"
  printf '{ }\n' >"${dir}/flake.nix"
  printf 'tracked, then deleted\n' >"${dir}/sub/deleted.txt"
  git -C "${dir}" add .gitignore flake.nix sub/deleted.txt
  git -C "${dir}" -c user.name=t -c user.email=t@t commit -qm init
  rm "${dir}/sub/deleted.txt"
  printf 'untracked\n' >"${dir}/sub/untracked file.txt"
  printf 'ignored\n' >"${dir}/ignored.txt"
}

t_build_import_local() {
  local project role="${PIKA_ROLE_IDS[0]}" tree="${WORK}/tree" record="${WORK}/build.record" build_dir
  new_project
  project="${NEW_PROJECT}"
  make_git_tree "${tree}"
  test_image_container "${WORK}/built" "built by stub" "built-$$"
  run env -C "${tree}/sub" PIKA_IMAGE_NIX="${NIX_STUB}" PIKA_NIX_STUB_RECORD="${record}" \
    PIKA_NIX_STUB_IMAGE="${WORK}/built" TMPDIR="${WORK}" \
    "${SCRIPT}" --role "${role}" build-import --local --project "${project}"
  expect "build-import --local exits 0 (${ERR_TEXT##*$'\n'})" test "${RC}" -eq 0
  expect "the untracked, non-ignored file reached the build tree" grep -qxF "file: sub/untracked file.txt" "${record}"
  expect "tracked files reached the build tree" grep -qxF "file: flake.nix" "${record}"
  expect "the ignored file did not reach the build tree" not grep -q "ignored.txt" "${record}"
  expect "nix build got the role's flake package" \
    grep -qxF "argv: build --out-link result .#packages.${PIKA_ROLE_SYSTEM[${role}]}.${PIKA_ROLE_PACKAGE[${role}]}" "${record}"
  expect "the built image is under the role's alias" \
    test "$(alias_fp "${project}" "${PIKA_ROLE_DEFAULT_ALIAS[${role}]}")" == "$(fingerprint "${WORK}/built")"
  build_dir="$(sed -n 's/^cwd: //p' "${record}")"
  expect "the temp build directory ${build_dir} was removed" test -n "${build_dir}" -a ! -e "${build_dir}"

  run env -C "${tree}" PIKA_IMAGE_NIX="${NIX_STUB}" PIKA_NIX_STUB_RECORD="${record}" PIKA_NIX_STUB_FAIL=1 \
    TMPDIR="${WORK}" "${SCRIPT}" --role "${role}" build-import --local --project "${project}"
  build_dir="$(sed -n 's/^cwd: //p' "${record}")"
  expect "a failing build exits non-zero and still removes ${build_dir}" \
    test "${RC}" -ne 0 -a -n "${build_dir}" -a ! -e "${build_dir}"
}

# Remote mode through fake-ssh, with an awkward remote temp directory: every value that reaches the
# remote shell must arrive intact and must not run as code.
t_remote_mode() {
  local project role="${PIKA_ROLE_IDS[0]}" log="${WORK}/ssh.log" awkward canary="${WORK}/PWNED"
  new_project
  project="${NEW_PROJECT}"
  awkward="${WORK}/it's a \"dir\" \$(touch ${canary});touch ${canary}"
  mkdir -p "${awkward}"
  test_image_container "${WORK}/remote-a" "remote a" "remote-a-$$"
  : >"${log}"
  run env PIKA_IMAGE_SSH="${FAKE_SSH}" PIKA_FAKE_SSH_LOG="${log}" PIKA_BUILD_SSH_KEY="${WORK}/key file" \
    PIKA_IMAGE_REMOTE_TMPDIR="${awkward}" \
    "${SCRIPT}" --role "${role}" import --remote-host builder@pika-build.example --project "${project}" \
    --artifact "${WORK}/remote-a"
  expect "remote import through ssh exits 0 (${ERR_TEXT##*$'\n'})" test "${RC}" -eq 0
  expect "remote import moved the alias" \
    test "$(alias_fp "${project}" "${PIKA_ROLE_DEFAULT_ALIAS[${role}]}")" == "$(fingerprint "${WORK}/remote-a")"
  expect "the import went through ssh" test -s "${log}"
  expect "every ssh call carries -i KEY, StrictHostKeyChecking=accept-new and the host" \
    not grep -vF -- "ssh -i ${WORK}/key\\ file -o StrictHostKeyChecking=accept-new builder@pika-build.example " "${log}"
  expect "nothing in the awkward value ran as code" test ! -e "${canary}"
  expect "the remote temp directory was removed" test -z "$(ls -A "${awkward}")"

  local tree="${WORK}/remote-tree" record="${WORK}/remote.record"
  make_git_tree "${tree}"
  test_image_container "${WORK}/remote-b" "remote b" "remote-b-$$"
  run env -C "${tree}" PIKA_IMAGE_SSH="${FAKE_SSH}" PIKA_FAKE_SSH_LOG="${log}" \
    PIKA_IMAGE_REMOTE_TMPDIR="${awkward}" PIKA_IMAGE_NIX="${NIX_STUB}" PIKA_NIX_STUB_RECORD="${record}" \
    PIKA_NIX_STUB_IMAGE="${WORK}/remote-b" "${SCRIPT}" --role "${role}" build-import --project "${project}"
  expect "remote build-import exits 0 and moves the alias (${ERR_TEXT##*$'\n'})" \
    test "${RC}" -eq 0 -a "$(alias_fp "${project}" "${PIKA_ROLE_DEFAULT_ALIAS[${role}]}")" == "$(fingerprint "${WORK}/remote-b")"
  expect "remote build-import: the untracked file reached the build tree" \
    grep -qxF "file: sub/untracked file.txt" "${record}"
  expect "remote build-import: the ignored file did not" not grep -q ignored.txt "${record}"
  expect "remote build-import: the default host is pika-build" grep -q " pika-build " "${log}"
  expect "remote build-import: the temp dir was removed" test -z "$(ls -A "${awkward}")"
  expect "remote build-import: nothing ran as code" test ! -e "${canary}"
}

# A third role added to a copy of roles.toml works with no edit to the script.
t_third_role_in_copy() {
  local copy="${WORK}/copy" role="test-extra-container" project
  mkdir -p "${copy}/scripts/lib" "${copy}/nix"
  cp "${REPO}/roles.toml" "${copy}/"
  cp -r "${REPO}/nix/." "${copy}/nix/"
  cp "${SCRIPT}" "${copy}/scripts/"
  cp "${REPO}/scripts/lib/common.sh" "${copy}/scripts/lib/"
  mkdir -p "${copy}/nix/incus"
  cat "${REPO}/tests/fixtures/extra-role.toml" >>"${copy}/roles.toml"
  cp "${REPO}/tests/fixtures/test-extra-arm.nix" "${copy}/nix/incus/roles/"
  if ! (cd "${REPO}" && cargo run -q -p pika-roles-codegen -- generate --manifest "${copy}/roles.toml") \
    >"${WORK}/codegen.log" 2>&1; then
    fail "codegen on the copy failed: $(tail -n 5 "${WORK}/codegen.log")"
    return 0
  fi
  expect "the copy's generated roles.sh has the new role" grep -q "${role}" "${copy}/scripts/lib/roles.sh"
  run "${copy}/scripts/incus-role-image.sh" --help
  expect "the copy's --help lists the new role" contains "${OUT}" "${role}"
  # The Incus side is pika-guest, whose roles are compiled in from the repository's roles.toml: the
  # copy's script accepts the role, and the repository's binary names it as unknown until rebuilt.
  new_project
  project="${NEW_PROJECT}"
  run "${copy}/scripts/incus-role-image.sh" --role "${role}" import --local --project "${project}" \
    --artifact "${PIKA_TEST_IMAGE_DIR}/container"
  expect "the copy's script passes the new role to pika-guest, which (not rebuilt) names it unknown with exit 2" \
    test "${RC}" -eq 2 -a -n "$(contains "${ERR_TEXT}" "unknown Incus guest role \`${role}\`" && echo y)"
  run "${SCRIPT}" --role "${role}" import --local
  expect "the repository's script (through pika-guest) still rejects it with exit 2" test "${RC}" -eq 2
}

# image_props PROJECT FP: the pika.* properties of an image, one key=value a line.
image_rev() {
  incus query "/1.0/images/$2?project=$1" | jq -r '.properties["pika.source-rev"] // "-"'
}

# status_verdict PROJECT ROLE ARGS...: the verdict `pika-guest image status --json` reports.
status_verdict() {
  local project="$1" role="$2" json
  shift 2
  # Exit 1 means "not current": the JSON is the answer either way.
  json="$("${PIKA_GUEST}" image status --role "${role}" --project "${project}" --json "$@" 2>/dev/null)" || true
  jq -r '.[0].verdict' <<<"${json}"
}

# Two imports with different provenance, status against each artifact, rollback, hand import.
t_status_and_rollback() {
  local project role="${PIKA_ROLE_IDS[0]}" alias first_fp second_fp json
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  new_project
  project="${NEW_PROJECT}"
  test_image_container "${WORK}/rev-a" "rev a" "rev-a-$$" "${role}" "1111111111111111111111111111111111111111"
  test_image_container "${WORK}/rev-b" "rev b" "rev-b-$$" "${role}" "2222222222222222222222222222222222222222"
  first_fp="$(fingerprint "${WORK}/rev-a")"
  second_fp="$(fingerprint "${WORK}/rev-b")"
  run "${SCRIPT}" --role "${role}" status --local --project "${project}" --artifact "${WORK}/rev-a"
  expect "status before any import: missing, exit 1 (${OUT##*$'\n'})" \
    test "${RC}" -eq 1 -a -n "$(contains "${OUT}" "missing" && echo y)"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/rev-a"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/rev-b"
  expect "the image carries its provenance as Incus properties (pika.source-rev 2222...)" \
    test "$(image_rev "${project}" "${second_fp}")" == "2222222222222222222222222222222222222222"
  run "${SCRIPT}" --role "${role}" status --local --project "${project}" --artifact "${WORK}/rev-b"
  expect "status for the second artifact: current, exit 0 (${OUT##*$'\n'})" \
    test "${RC}" -eq 0 -a -n "$(contains "${OUT##*$'\n'}" " current" && echo y)"
  run "${SCRIPT}" --role "${role}" status --local --project "${project}" --artifact "${WORK}/rev-a"
  expect "status for the first artifact: stale, exit 1 (${OUT##*$'\n'})" \
    test "${RC}" -eq 1 -a -n "$(contains "${OUT##*$'\n'}" " stale" && echo y)"

  run "${SCRIPT}" --role "${role}" rollback --local --project "${project}"
  expect "rollback exits 0 and restores the first fingerprint" \
    test "${RC}" -eq 0 -a "$(alias_fp "${project}" "${alias}")" == "${first_fp}"
  json="$("${PIKA_GUEST}" image status --role "${role}" --project "${project}" --artifact "${WORK}/rev-a" --json)" || true
  expect "status --json reflects the rollback (fingerprint, rev, verdict current)" \
    test "$(jq -r '.[0] | "\(.fingerprint) \(.provenance["source-rev"]) \(.verdict)"' <<<"${json}")" \
    == "${first_fp} 1111111111111111111111111111111111111111 current"
  run "${SCRIPT}" --role "${role}" rollback --local --project "${project}" --to 2222222
  expect "rollback --to REV moves the alias to that image" \
    test "${RC}" -eq 0 -a "$(alias_fp "${project}" "${alias}")" == "${second_fp}"
  run "${SCRIPT}" --role "${role}" rollback --local --project "${project}" --to "${first_fp:0:10}"
  expect "rollback --to FINGERPRINT moves the alias to that image" \
    test "${RC}" -eq 0 -a "$(alias_fp "${project}" "${alias}")" == "${first_fp}"
  run "${SCRIPT}" --role "${role}" rollback --local --project "${project}" --to ffffffff
  expect "rollback --to an unknown prefix fails, lists the kept versions, leaves the alias" \
    test "${RC}" -ne 0 -a "$(alias_fp "${project}" "${alias}")" == "${first_fp}" \
    -a -n "$(contains "${ERR_TEXT}" "matches no kept version" && echo y)"

  # An image imported by hand (no pika.* properties) moved under the alias.
  test_image_container "${WORK}/by-hand" "by hand" "by-hand-$$" -
  incus image import --quiet --project "${project}" "${WORK}/by-hand/metadata.tar.xz" "${WORK}/by-hand/rootfs.squashfs"
  incus query -X PATCH "/1.0/images/aliases/${alias//\//%2F}?project=${project}" \
    --data "{\"target\":\"$(fingerprint "${WORK}/by-hand")\"}" >/dev/null
  expect "a hand-imported image under the alias is unknown-provenance" \
    test "$(status_verdict "${project}" "${role}" --artifact "${WORK}/rev-b")" == unknown-provenance
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/rev-b"
  expect "importing over a hand-imported image keeps it reachable as a version (rollback target)" \
    test -n "$(incus query "/1.0/images/$(fingerprint "${WORK}/by-hand")?project=${project}" \
      | jq -r --arg a "${alias}/v" '.aliases[].name | select(startswith($a))')"
}

# Without --artifact, status expects this checkout: HEAD (-dirty when tracked files changed) and the
# role's digest from the registry.
t_status_checkout() {
  local project role="${PIKA_ROLE_IDS[0]}" rev
  rev="$(git -C "${REPO}" rev-parse HEAD)"
  [[ -z "$(git -C "${REPO}" status --porcelain --untracked-files=no)" ]] || rev="${rev}-dirty"
  new_project
  project="${NEW_PROJECT}"
  test_image_container "${WORK}/co-old" "checkout old" "co-old-$$" "${role}" "0000000000000000000000000000000000000000"
  test_image_container "${WORK}/co-now" "checkout now" "co-now-$$" "${role}" "${rev}"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/co-old"
  run env -C "${REPO}" "${SCRIPT}" --role "${role}" status --local --project "${project}"
  expect "status without --artifact: an image of another rev is stale (${OUT##*$'\n'})" \
    test "${RC}" -eq 1 -a -n "$(contains "${OUT##*$'\n'}" " stale" && echo y)"
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/co-now"
  run env -C "${REPO}" "${SCRIPT}" --role "${role}" status --local --project "${project}"
  expect "status without --artifact: an image of this checkout's rev and the role's digest is current" \
    test "${RC}" -eq 0 -a -n "$(contains "${OUT##*$'\n'}" " current" && echo y)"
  expect "pika-guest status --repo (no --artifact) agrees" \
    test "$(status_verdict "${project}" "${role}" --repo "${REPO}")" == current
}

# With --keep 2 a fourth import leaves exactly two images; an instance pins its image.
t_keep() {
  local project role="${PIKA_ROLE_IDS[0]}" alias i fps=()
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  new_project
  project="${NEW_PROJECT}"
  for i in 1 2 3 4; do
    test_image_container "${WORK}/keep-${i}" "keep ${i}" "keep-${i}-$$" "${role}" "rev-${i}"
    fps+=("$(fingerprint "${WORK}/keep-${i}")")
    run "${SCRIPT}" --role "${role}" import --local --project "${project}" --keep 2 --artifact "${WORK}/keep-${i}"
  done
  expect "--keep 2: after four imports exactly two images remain ($(image_count "${project}"))" \
    test "$(image_count "${project}")" -eq 2
  expect "--keep 2: they are the third and the fourth, the alias on the fourth" \
    test "$(image_present "${project}" "${fps[2]}" && image_present "${project}" "${fps[3]}" && echo y)" == y \
    -a "$(alias_fp "${project}" "${alias}")" == "${fps[3]}"
  expect "--keep 2: every remaining image has an alias" \
    test "$(incus query "/1.0/images?project=${project}&recursion=1" | jq '[.[] | select(.aliases | length == 0)] | length')" -eq 0
  "${PIKA_GUEST}" image prune --role "${role}" --project "${project}" --keep 1 2>/dev/null
  expect "prune --keep 1 leaves only the served image" \
    test "$(image_count "${project}")" -eq 1 -a "$(alias_fp "${project}" "${alias}")" == "${fps[3]}"
}

# Truncated and mismatched artifacts are refused before anything reaches Incus.
t_truncated_artifact() {
  local project role="${PIKA_ROLE_IDS[0]}" alias size kind
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  new_project
  project="${NEW_PROJECT}"
  big_image "${WORK}/whole" "whole-$$"
  mkdir -p "${WORK}/cut-ct" "${WORK}/cut-vm"
  cp "${WORK}/whole/metadata.tar.xz" "${WORK}/cut-ct/"
  size="$(stat -c %s "${WORK}/whole/rootfs.squashfs")"
  head -c "$((size / 2))" "${WORK}/whole/rootfs.squashfs" >"${WORK}/cut-ct/rootfs.squashfs"
  test_image_vm "${WORK}/vm-whole" "vm whole" "vm-whole-$$" "${role}"
  cp "${WORK}/vm-whole/metadata.tar.xz" "${WORK}/cut-vm/"
  size="$(stat -c %s "${WORK}/vm-whole/disk.qcow2")"
  head -c "$((size - 4096))" "${WORK}/vm-whole/disk.qcow2" >"${WORK}/cut-vm/disk.qcow2"
  for kind in ct vm; do
    run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/cut-${kind}"
    expect "truncated ${kind} payload: exit 1, a clear message (${ERR_TEXT##*error: })" \
      test "${RC}" -eq 1 -a -n "$(contains "${ERR_TEXT}" "truncated" && contains "${ERR_TEXT}" "nothing imported" && echo y)"
    expect "truncated ${kind} payload: nothing was imported, no alias" \
      test "$(image_count "${project}")" -eq 0 -a "$(alias_fp "${project}" "${alias}")" == MISSING
  done
  mkdir -p "${WORK}/arm"
  cp "${WORK}/vm-whole/disk.qcow2" "${WORK}/arm/"
  sed 's/^architecture: x86_64/architecture: aarch64/; s/^  architecture: x86_64/  architecture: aarch64/' \
    <(tar -xJOf "${WORK}/vm-whole/metadata.tar.xz" metadata.yaml) >"${WORK}/arm/metadata.yaml"
  tar -C "${WORK}/arm" -cJf "${WORK}/arm/metadata.tar.xz" metadata.yaml
  run "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/arm"
  expect "an artifact of another architecture is refused naming both (${ERR_TEXT##*error: })" \
    test "${RC}" -eq 1 -a -n "$(contains "${ERR_TEXT}" "architecture aarch64 does not match role ${role}'s system ${PIKA_ROLE_SYSTEM[${role}]}" && echo y)" \
    -a "$(image_count "${project}")" -eq 0
  if ((${#PIKA_ROLE_IDS[@]} > 1)); then
    run "${SCRIPT}" --role "${PIKA_ROLE_IDS[1]}" import --local --project "${project}" --artifact "${WORK}/vm-whole"
    expect "an artifact built for another role is refused" \
      test "${RC}" -eq 1 -a -n "$(contains "${ERR_TEXT}" "built for role ${role} (pika.role), not ${PIKA_ROLE_IDS[1]}" && echo y)"
  fi
}

# hostile_dir NAME: WORK/NAME holding the shared container rootfs, for a crafted metadata.tar.xz.
hostile_dir() {
  mkdir -p "${WORK}/$1/src"
  cp "${PIKA_TEST_IMAGE_DIR}/container/rootfs.squashfs" "${WORK}/$1/"
  echo "${WORK}/$1"
}

# metadata_yaml ROLE [TEMPLATE]: a metadata.yaml of ROLE; with TEMPLATE, /etc/pika-template is
# rendered from it at create.
metadata_yaml() {
  printf 'architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  architecture: x86_64\n'
  printf '  os: busybox\n  release: test\n  variant: hostile\n  pika.role: "%s"\n' "$1"
  if [[ -n "${2:-}" ]]; then
    printf 'templates:\n  /etc/pika-template:\n    when: [create]\n    template: %s\n' "$2"
  else
    printf 'templates: {}\n'
  fi
}

# expect_refused WHAT DIR ROLE PROJECT TEXT: import is refused naming TEXT; nothing is imported.
expect_refused() {
  run "${PIKA_GUEST}" image import --role "$3" --project "$4" --artifact "$2"
  expect "$1: refused (exit ${RC}: ${ERR_TEXT##*error: })" \
    test "${RC}" -eq 1 -a -n "$(contains "${ERR_TEXT}" "$5" && contains "${ERR_TEXT}" "nothing imported" && echo y)"
  expect "$1: nothing imported, no alias" \
    test "$(image_count "$4")" -eq 0 -a "$(alias_fp "$4" "${PIKA_ROLE_DEFAULT_ALIAS[$3]}")" == MISSING
}

# Metadata tarballs that Incus would read otherwise than the check, or that can never launch.
t_hostile_metadata() {
  local project role="${PIKA_ROLE_IDS[0]}" other="${PIKA_ROLE_IDS[1]:-${PIKA_ROLE_IDS[0]}}" dir fp rss
  new_project
  project="${NEW_PROJECT}"

  # Two metadata.yaml entries: the first says ROLE, the second (./metadata.yaml) OTHER.
  dir="$(hostile_dir twice)"
  mkdir -p "${dir}/src/a" "${dir}/src/b"
  metadata_yaml "${role}" >"${dir}/src/a/metadata.yaml"
  metadata_yaml "${other}" >"${dir}/src/b/metadata.yaml"
  tar -cJf "${dir}/metadata.tar.xz" -C "${dir}/src/a" metadata.yaml -C "${dir}/src/b" ./metadata.yaml
  fp="$(incus image import "${dir}/metadata.tar.xz" "${dir}/rootfs.squashfs" --project "${project}" 2>&1 | sed -n 's/.*fingerprint: //p')"
  expect "incus itself keeps the last metadata.yaml (pika.role ${other})" \
    test "$(incus query "/1.0/images/${fp}?project=${project}" 2>/dev/null | jq -r '.properties["pika.role"]')" == "${other}"
  incus image delete "${fp}" --project "${project}" >/dev/null 2>&1 || true
  expect_refused "metadata.yaml twice" "${dir}" "${role}" "${project}" \
    "holds metadata.yaml twice (\"metadata.yaml\" and \"./metadata.yaml\")"

  # A template member that climbs out of templates/, kept as written (-P).
  dir="$(hostile_dir climb)"
  metadata_yaml "${role}" x.tpl >"${dir}/src/metadata.yaml"
  printf 'x\n' >"${dir}/src/x.tpl"
  tar -P -cJf "${dir}/metadata.tar.xz" -C "${dir}/src" \
    --transform 's,^x.tpl$,templates/../../../../tmp/x.tpl,' metadata.yaml x.tpl
  expect_refused "template member templates/../../../../tmp/x.tpl" "${dir}" "${role}" "${project}" \
    "member \"templates/../../../../tmp/x.tpl\" has a \`..\` component"

  # A template that is a symlink to /etc/shadow.
  dir="$(hostile_dir symlink)"
  metadata_yaml "${role}" shadow.tpl >"${dir}/src/metadata.yaml"
  mkdir -p "${dir}/src/templates"
  ln -s /etc/shadow "${dir}/src/templates/shadow.tpl"
  tar -cJf "${dir}/metadata.tar.xz" -C "${dir}/src" metadata.yaml templates
  expect_refused "template symlink to /etc/shadow" "${dir}" "${role}" "${project}" \
    'template member "templates/shadow.tpl" is a symlink (to /etc/shadow)'

  # A template metadata.yaml names but the tarball lacks.
  dir="$(hostile_dir missing)"
  metadata_yaml "${role}" gone.tpl >"${dir}/src/metadata.yaml"
  tar -cJf "${dir}/metadata.tar.xz" -C "${dir}/src" metadata.yaml
  expect_refused "a template that is missing" "${dir}" "${role}" "${project}" \
    "template for /etc/pika-template is gone.tpl, but the tarball holds no plain file templates/gone.tpl"

  # An xz bomb: 1 GiB of zeros, then metadata.yaml, in one xz stream of ~150 KiB.
  dir="$(hostile_dir bomb)"
  metadata_yaml "${role}" >"${dir}/src/metadata.yaml"
  truncate -s 1G "${dir}/src/zeros"
  tar -cf - -C "${dir}/src" zeros metadata.yaml | xz -0 -T2 >"${dir}/metadata.tar.xz"
  rm -f "${dir}/src/zeros"
  /usr/bin/time -f '%M' -o "${WORK}/bomb.rss" "${PIKA_GUEST}" image import --role "${role}" \
    --project "${project}" --artifact "${dir}" >/dev/null 2>"${WORK}/bomb.err" || true
  ERR_TEXT="$(cat "${WORK}/bomb.err")"
  rss="$(tail -n1 "${WORK}/bomb.rss")"
  expect "xz bomb ($(stat -c %s "${dir}/metadata.tar.xz") bytes): refused naming the bound and the file (${ERR_TEXT##*error: })" \
    contains "${ERR_TEXT}" "${dir}/metadata.tar.xz: unpacks to more than 16 MiB"
  expect "xz bomb: peak RSS ${rss} KiB stays under 64 MiB; nothing imported" \
    test "${rss}" -lt 65536 -a "$(image_count "${project}")" -eq 0

  # A plain template passes; a container launched from the image has it rendered.
  dir="$(hostile_dir plain)"
  metadata_yaml "${role}" pika.tpl >"${dir}/src/metadata.yaml"
  mkdir -p "${dir}/src/templates"
  printf 'made from a template for {{ instance.name }}\n' >"${dir}/src/templates/pika.tpl"
  tar -cJf "${dir}/metadata.tar.xz" -C "${dir}/src" metadata.yaml templates
  run "${PIKA_GUEST}" image import --role "${role}" --project "${project}" --artifact "${dir}"
  expect "an image with a plain template imports (${ERR_TEXT##*error: })" test "${RC}" -eq 0
}

# Two concurrent imports to the same new alias: the alias ends on one whole image, nothing is left
# unaliased, both exit 0.
t_concurrent_import() {
  local project role="${PIKA_ROLE_IDS[0]}" alias pid_a pid_b rc_a=0 rc_b=0 target round
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  big_image "${WORK}/race-a" "race-a-$$"
  big_image "${WORK}/race-b" "race-b-$$"
  for round in 1 2; do
    new_project
    project="${NEW_PROJECT}"
    "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/race-a" >"${WORK}/race-a.log" 2>&1 &
    pid_a=$!
    "${SCRIPT}" --role "${role}" import --local --project "${project}" --artifact "${WORK}/race-b" >"${WORK}/race-b.log" 2>&1 &
    pid_b=$!
    wait "${pid_a}" || rc_a=$?
    wait "${pid_b}" || rc_b=$?
    target="$(alias_fp "${project}" "${alias}")"
    expect "round ${round}: both concurrent imports exit 0 (${rc_a}, ${rc_b}: $(tail -n 1 "${WORK}/race-b.log"))" \
      test "${rc_a}" -eq 0 -a "${rc_b}" -eq 0
    expect "round ${round}: the alias is on one of the two whole images" \
      test "${target}" == "$(fingerprint "${WORK}/race-a")" -o "${target}" == "$(fingerprint "${WORK}/race-b")"
    expect "round ${round}: no image is left without an alias" \
      test "$(incus query "/1.0/images?project=${project}&recursion=1" | jq '[.[] | select(.aliases | length == 0)] | length')" -eq 0
  done
}

# reading_file PID FILE: whether process PID has FILE open (the upload streams it).
reading_file() {
  local fd
  for fd in /proc/"$1"/fd/*; do
    [[ "$(readlink "${fd}" 2>/dev/null)" == "$2" ]] && return 0
  done
  return 1
}

# kill -9 of an import while its upload is in flight, and at moments after: the alias is always on
# the old or the new image, never missing, and no image is left without an alias.
t_kill9_import() {
  local project role="${PIKA_ROLE_IDS[0]}" alias old_fp new_fp pid delay seen i
  local lost=0 leftovers=0 outcomes=""
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  test_image_container "${WORK}/k9-old" "k9 old" "k9-old-$$" "${role}"
  old_fp="$(fingerprint "${WORK}/k9-old")"
  big_image "${WORK}/k9-new" "k9-new-$$"
  new_fp="$(fingerprint "${WORK}/k9-new")"
  for delay in 0 0.05 0.1 0.2 0.4 0.8; do
    new_project
    project="${NEW_PROJECT}"
    "${PIKA_GUEST}" image import --role "${role}" --project "${project}" --artifact "${WORK}/k9-old" >/dev/null 2>&1
    "${PIKA_GUEST}" image import --role "${role}" --project "${project}" --artifact "${WORK}/k9-new" >/dev/null 2>&1 &
    pid=$!
    for ((i = 0; i < 200; i++)); do
      reading_file "${pid}" "$(realpath "${WORK}/k9-new/rootfs.squashfs")" && break
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.02
    done
    sleep "${delay}"
    kill -9 "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
    sleep 0.5
    seen="$(alias_fp "${project}" "${alias}")"
    case "${seen}" in
      "${old_fp}") outcomes+=" ${delay}s:old" ;;
      "${new_fp}") outcomes+=" ${delay}s:new" ;;
      *) outcomes+=" ${delay}s:${seen}"; lost=$((lost + 1)) ;;
    esac
    leftovers=$((leftovers + $(incus query "/1.0/images?project=${project}&recursion=1" \
      | jq '[.[] | select(.aliases | length == 0)] | length')))
    test_env_delete_project "${project}"
  done
  expect "kill -9 during the upload and after: the alias is on the old or the new image (${outcomes# })" \
    test "${lost}" -eq 0
  expect "after kill -9 no image is left without an alias (${leftovers})" test "${leftovers}" -eq 0
}

# Repeated --remote-host: each host its own swap, a down host does not stop or undo the others, a
# closing table per host. Hosts run through fake-ssh on this machine.
t_multi_host() {
  local project role="${PIKA_ROLE_IDS[0]}" alias log="${WORK}/multi-ssh.log" fp
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  new_project
  project="${NEW_PROJECT}"
  test_image_container "${WORK}/multi" "multi" "multi-$$" "${role}" "3333333333333333333333333333333333333333"
  fp="$(fingerprint "${WORK}/multi")"
  : >"${log}"
  run env PIKA_IMAGE_SSH="${FAKE_SSH}" PIKA_FAKE_SSH_LOG="${log}" PIKA_FAKE_SSH_DOWN="down.example" \
    PIKA_IMAGE_REMOTE_TMPDIR="${WORK}" "${SCRIPT}" --role "${role}" import --project "${project}" \
    --artifact "${WORK}/multi" --remote-host up-1.example --remote-host down.example --remote-host up-2.example
  expect "one host down: exit 1" test "${RC}" -eq 1
  expect "the hosts after the failed one still ran" grep -q " up-2.example " "${log}"
  expect "the alias moved on the hosts that are up" test "$(alias_fp "${project}" "${alias}")" == "${fp}"
  expect "the closing table shows the failed host" \
    grep -Eq '^down\.example +FAILED' <<<"${OUT}"
  expect "the closing table shows which image and rev each host serves" \
    grep -Eq "^up-2\\.example +ok +up-2\\.example ${alias} ${fp:0:12} rev 333333333333" <<<"${OUT}"
  run env PIKA_IMAGE_SSH="${FAKE_SSH}" PIKA_FAKE_SSH_LOG="${log}" PIKA_IMAGE_REMOTE_TMPDIR="${WORK}" \
    "${SCRIPT}" --role "${role}" status --project "${project}" --artifact "${WORK}/multi" \
    --remote-host up-1.example --remote-host up-2.example
  expect "remote status on two hosts: both current, exit 0 (${OUT##*$'\n'})" \
    test "${RC}" -eq 0 -a "$(grep -c ' current$' <<<"${OUT}")" -ge 2
  expect "remote runs left no temp directory behind" test -z "$(find "${WORK}" -maxdepth 1 -name 'pika-incus-image.*')"
}

# A second project stands in for a second host: status per host, rollback on one leaves the other.
t_two_hosts_status() {
  local role="${PIKA_ROLE_IDS[0]}" p1 p2 alias
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  new_project
  p1="${NEW_PROJECT}"
  new_project
  p2="${NEW_PROJECT}"
  test_image_container "${WORK}/h-a" "h a" "h-a-$$" "${role}" "4444444444444444444444444444444444444444"
  test_image_container "${WORK}/h-b" "h b" "h-b-$$" "${role}" "5555555555555555555555555555555555555555"
  for project in "${p1}" "${p2}"; do
    "${PIKA_GUEST}" image import --role "${role}" --project "${project}" --artifact "${WORK}/h-a" >/dev/null 2>&1
    "${PIKA_GUEST}" image import --role "${role}" --project "${project}" --artifact "${WORK}/h-b" >/dev/null 2>&1
  done
  "${PIKA_GUEST}" image rollback --role "${role}" --project "${p2}" >/dev/null 2>&1
  expect "host 1 (project ${p1}) is current for the second artifact, host 2 rolled back is stale" \
    test "$(status_verdict "${p1}" "${role}" --artifact "${WORK}/h-b") $(status_verdict "${p2}" "${role}" --artifact "${WORK}/h-b")" \
    == "current stale"
  local all
  all="$("${PIKA_GUEST}" image status --all --project "${p1}" --expect-rev 5555555555555555555555555555555555555555 --json 2>/dev/null)" || true
  expect "status --all lists every registry role, the one imported current, the others missing" \
    test "$(jq -r '[.[] | "\(.role)=\(.verdict)"] | join(" ")' <<<"${all}")" \
    == "$(for r in "${PIKA_ROLE_IDS[@]}"; do [[ "${r}" == "${role}" ]] && printf '%s=current ' "${r}" || printf '%s=missing ' "${r}"; done | sed 's/ $//')"
}

# A certificate for 127.0.0.1 signed by the test CA that incusd trusts (SSL_CERT_FILE bundle).
make_server_cert() {
  local dir="$1" ca="${PIKA_TEST_CA_DIR:?run through scripts/test.sh}"
  mkdir -p "${dir}"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
    -keyout "${dir}/key.pem" -out "${dir}/req.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"${dir}/ext.cnf"
  openssl x509 -req -in "${dir}/req.csr" -CA "${ca}/ca.pem" -CAkey "${ca}/ca.key" -CAcreateserial \
    -CAserial "${dir}/ca.srl" -days 1 -extfile "${dir}/ext.cnf" -out "${dir}/cert.pem" 2>/dev/null
}

# with_template DIR: DIR/metadata.tar.xz gains templates/pika.tpl, rendered to /etc/pika-template.
with_template() {
  local dir="$1" work
  work="$(mktemp -d)"
  tar -xJf "${dir}/metadata.tar.xz" -C "${work}"
  sed -i '/^templates: {}$/d' "${work}/metadata.yaml"
  printf 'templates:\n  /etc/pika-template:\n    when: [create]\n    template: pika.tpl\n' >>"${work}/metadata.yaml"
  mkdir -p "${work}/templates"
  printf 'made from a template for {{ instance.name }}\n' >"${work}/templates/pika.tpl"
  tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
    -C "${work}" -cJf "${dir}/metadata.tar.xz" metadata.yaml templates
  rm -rf "${work}"
}

# published_members TREE FINGERPRINT: the members of the published metadata tarball.
published_members() {
  local path
  path="$(jq -r --arg fp "$2" '[.products[].versions[].items[] | select(."combined_squashfs_sha256" == $fp or ."combined_sha256" == $fp or ."combined_disk-kvm-img_sha256" == $fp) | .path] | .[0] // empty' \
    "$1/streams/v1/images.json" 2>/dev/null)"
  [[ -n "${path}" ]] && tar -tJf "$1/${path}" 2>/dev/null
}

# t_publish_symlinks ROLE TREE: publish refuses a tree with a symlink (it writes as root), and
# nothing is written through it.
t_publish_symlinks() {
  local role="$1" tree="$2" copy link outside="${WORK}/outside"
  for link in streams/v1/index.json streams images; do
    copy="${WORK}/tree-link"
    rm -rf "${copy}" "${outside}"
    cp -a "${tree}" "${copy}"
    mkdir -p "${outside}"
    if [[ "${link}" == *.json ]]; then
      mv "${copy}/${link}" "${outside}/index.json"
      ln -s "${outside}/index.json" "${copy}/${link}"
    else
      mv "${copy}/${link}" "${outside}/${link}"
      ln -s "${outside}/${link}" "${copy}/${link}"
    fi
    find "${outside}" -type f -printf '%p %T@ ' -exec sha256sum {} \; | sort >"${WORK}/outside.before"
    run "${PIKA_GUEST}" image publish --role "${role}" --to "${copy}" --artifact "${WORK}/ss-2"
    find "${outside}" -type f -printf '%p %T@ ' -exec sha256sum {} \; | sort >"${WORK}/outside.after"
    expect "publish refuses a tree whose ${link} is a symlink (${ERR_TEXT##*error: })" \
      test "${RC}" -eq 1 -a -n "$(contains "${ERR_TEXT}" "${copy}/${link} is a symlink (to ${outside}/" && echo y)"
    expect "... and writes nothing outside the tree" cmp -s "${WORK}/outside.before" "${WORK}/outside.after"
  done
  rm -rf "${copy}" "${outside}"
}

# Publish a simplestreams tree, serve it over HTTPS, launch from it as a remote, publish again,
# refresh the cached image, withdraw the newest version.
t_simplestreams() {
  local role="${PIKA_ROLE_IDS[0]}" alias tree="${WORK}/tree-ss" project url remote="pika-test-ss-$$" i
  local cached first second json
  alias="${PIKA_ROLE_DEFAULT_ALIAS[${role}]}"
  test_image_container "${WORK}/ss-1" "ss 1" "ss-1-$$" "${role}" "6666666666666666666666666666666666666666"
  test_image_container "${WORK}/ss-2" "ss 2" "ss-2-$$" "${role}" "7777777777777777777777777777777777777777"
  test_image_container "${WORK}/ss-hand" "by hand" "ss-hand-$$" -
  with_template "${WORK}/ss-1"
  run "${PIKA_GUEST}" image publish --role "${role}" --to "${tree}" --artifact "${WORK}/ss-hand"
  expect "publish refuses an image without provenance (${ERR_TEXT##*error: })" \
    test "${RC}" -eq 1 -a -n "$(contains "${ERR_TEXT}" "has no provenance" && echo y)"
  # Relative paths: --artifact and --to from the artifact's parent directory.
  json="$(cd "${WORK}" && "${PIKA_GUEST}" image publish --role "${role}" --to "${tree#"${WORK}/"}" --artifact ss-1 --json)" || true
  first="$(jq -r .fingerprint <<<"${json}" 2>/dev/null)"
  expect "publish (relative --artifact and --to) adds a version to the tree (${first:0:12})" \
    test -n "${first}" -a "$(cd "${tree}" && incus-simplestreams list --format json | jq length)" -eq 1
  expect "the published metadata keeps templates/ ($(published_members "${tree}" "${first}" | tr '\n' ' '))" \
    test -n "$(published_members "${tree}" "${first}" | grep -x 'templates/pika.tpl')"
  t_publish_symlinks "${role}" "${tree}"

  make_server_cert "${WORK}/tls"
  "${HTTPS_STATIC}" "${tree}" "${WORK}/tls/cert.pem" "${WORK}/tls/key.pem" "${WORK}/port" \
    >"${WORK}/https.log" 2>&1 &
  SERVER_PID=$!
  for ((i = 0; i < 100; i++)); do [[ -s "${WORK}/port" ]] && break; sleep 0.1; done
  url="https://127.0.0.1:$(cat "${WORK}/port")"
  SERVER_CACHE="/var/cache/incus/$(printf '%s' "${url}" | sha256sum | cut -d' ' -f1)"
  export INCUS_CONF="${WORK}/incus-conf"
  mkdir -p "${INCUS_CONF}"
  incus remote add "${remote}" "${url}" --protocol simplestreams --public >/dev/null
  new_project -c features.profiles=false
  project="${NEW_PROJECT}"
  run incus launch "${remote}:${alias}" c1 --project "${project}"
  expect "an instance launches from ${remote}:${alias} (${ERR_TEXT##*$'\n'})" \
    test "$(incus list c1 --project "${project}" --format csv --columns s 2>/dev/null)" == RUNNING
  cached="$(incus query "/1.0/images?project=${project}&recursion=1" | jq -r '.[0].fingerprint')"
  expect "the guest launched from the published image has its template rendered" \
    test "$(incus exec c1 --project "${project}" -- cat /etc/pika-template 2>&1)" == "made from a template for c1"
  expect "the host cached the published version, provenance in its label" \
    test "${cached}" == "${first}" -a "$(incus query "/1.0/images/${cached}?project=${project}" \
      | jq -r '.properties.label')" == "pika.role=${role} pika.source-rev=6666666666666666666666666666666666666666 pika.roles-digest=${PIKA_ROLE_ROLES_DIGEST[${role}]:-} pika.built-from=test-image:ss-1-$$"

  json="$("${PIKA_GUEST}" image publish --role "${role}" --to "${tree}" --artifact "${WORK}/ss-2" --json)" || true
  second="$(jq -r .fingerprint <<<"${json}" 2>/dev/null)"
  expect "a second publish adds a second version ($(jq -r '.versions | join(" ")' <<<"${json}" 2>/dev/null))" \
    test "$(jq '.versions | length' <<<"${json}" 2>/dev/null)" -eq 2 -a -n "${second}" -a "${second}" != "${first}"
  # incusd keeps a server's index for an hour; auto-update runs every few hours, a test cannot wait.
  touch -d '2 hours ago' "${SERVER_CACHE}"/*.json
  incus image refresh "${cached}" --project "${project}" >/dev/null 2>&1 || true
  expect "incus image refresh moves the cached image to the new version" \
    test "$(incus query "/1.0/images?project=${project}&recursion=1" | jq -r '[.[].fingerprint] | join(" ")')" == "${second}"
  expect "... whose label carries the new provenance" \
    test -n "$(incus query "/1.0/images/${second}?project=${project}" | jq -r '.properties.label' \
      | grep -F "pika.source-rev=7777777777777777777777777777777777777777")"

  run "${PIKA_GUEST}" image rollback --role "${role}" --published "${tree}"
  expect "rollback --published withdraws the newest version, the first serves again" \
    test "${RC}" -eq 0 -a "$(cd "${tree}" && incus-simplestreams list --format json | jq -r '[.[].fingerprint] | join(" ")')" == "${first}"
  run "${PIKA_GUEST}" image rollback --role "${role}" --published "${tree}"
  expect "rollback --published refuses to withdraw the last version" \
    test "${RC}" -eq 1 -a -n "$(contains "${ERR_TEXT}" "has 1 published version" && echo y)"
  incus remote remove "${remote}" >/dev/null 2>&1 || true
  unset INCUS_CONF
}

# Deletes this run's projects (test.sh sweeps pika-test-* too; this keeps standalone runs tidy).
cleanup() {
  local i
  [[ -z "${SERVER_PID}" ]] || kill "${SERVER_PID}" 2>/dev/null || true
  [[ -z "${SERVER_CACHE}" ]] || rm -rf "${SERVER_CACHE}"
  for ((i = 1; i <= PROJECT_COUNT; i++)); do
    test_env_delete_project "${PROJECT_PREFIX}-${i}"
  done
}

main() {
  [[ -n "${PIKA_TEST_IMAGE_DIR:-}" ]] || { err "PIKA_TEST_IMAGE_DIR is not set; run through scripts/test.sh"; exit 2; }
  rm -rf "${WORK}"
  mkdir -p "${WORK}"
  trap cleanup EXIT
  if [[ -z "${PIKA_GUEST:-}" ]]; then
    (cd "${REPO}" && cargo build -q -p pika-guest) || { err "cargo build -p pika-guest failed"; exit 1; }
    PIKA_GUEST="${CARGO_TARGET_DIR:-${REPO}/target}/debug/pika-guest"
  fi
  export PIKA_GUEST
  local test start tests=(t_shellcheck t_help t_usage_errors t_import_each_role t_reimport_identical
    t_swap_while_polling t_keep_referenced_image t_corrupt_artifact t_legacy_wrappers
    t_build_import_local t_remote_mode t_third_role_in_copy t_status_and_rollback t_status_checkout t_keep
    t_truncated_artifact t_hostile_metadata t_concurrent_import t_kill9_import t_multi_host t_two_hosts_status
    t_simplestreams)
  # PIKA_IMAGE_SCRIPT_TESTS="t_keep t_simplestreams": run only these (while working on them).
  [[ -z "${PIKA_IMAGE_SCRIPT_TESTS:-}" ]] || read -ra tests <<<"${PIKA_IMAGE_SCRIPT_TESTS}"
  for test in "${tests[@]}"; do
    start="${SECONDS}"
    log "${test}"
    "${test}"
    log "${test}: $((SECONDS - start))s"
  done
  suite_report
}

main "$@"
