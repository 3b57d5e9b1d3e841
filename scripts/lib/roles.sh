# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
# roles.toml sha256: 51253aa3e29ed791e2b10be4b70f492dc2da0c8f27eb1b511154477178299043
# shellcheck shell=bash disable=SC2034,SC2016
# Sourceable role table: PIKA_ROLE_IDS lists the roles; each PIKA_ROLE_<KEY> array (roles.toml key
# in upper snake case) is keyed by role ID. Lists are space separated; the user is
# name:uid:group:gid, a mount name:path:ro|rw[:optional], instance config key=value.
PIKA_ROLE_IDS=('managed-openclaw' 'pi-sandbox' 'pikaci-runner')
declare -gA PIKA_ROLE_CLUSTER_GROUP=(['managed-openclaw']='' ['pi-sandbox']='' ['pikaci-runner']='')
declare -gA PIKA_ROLE_CPU=(['managed-openclaw']='2' ['pi-sandbox']='2' ['pikaci-runner']='2')
declare -gA PIKA_ROLE_DEFAULT_ALIAS=(['managed-openclaw']='pika-agent/dev' ['pi-sandbox']='pi-sandbox/dev' ['pikaci-runner']='pikaci/dev')
declare -gA PIKA_ROLE_DESCRIPTION=(['managed-openclaw']='Pika managed OpenClaw Incus dev image' ['pi-sandbox']='Pika operator sandbox: pi and opencode over SSH' ['pikaci-runner']='Pika CI Incus dev image')
declare -gA PIKA_ROLE_DISK_SIZE_MIB=(['managed-openclaw']='8192' ['pi-sandbox']='16384' ['pikaci-runner']='12288')
declare -gA PIKA_ROLE_IMAGE_NAME=(['managed-openclaw']='pika-agent-incus-dev' ['pi-sandbox']='pi-sandbox-incus-dev' ['pikaci-runner']='pikaci-incus-dev')
declare -gA PIKA_ROLE_INSTANCE_CONFIG=(['managed-openclaw']='' ['pi-sandbox']='' ['pikaci-runner']='')
declare -gA PIKA_ROLE_INSTANCE_TYPE=(['managed-openclaw']='virtual-machine' ['pi-sandbox']='virtual-machine' ['pikaci-runner']='virtual-machine')
declare -gA PIKA_ROLE_LEGACY_PACKAGES=(['managed-openclaw']='pika-agent-incus-dev-image' ['pi-sandbox']='' ['pikaci-runner']='pikaci-incus-dev-image')
declare -gA PIKA_ROLE_MEMORY_MIB=(['managed-openclaw']='4096' ['pi-sandbox']='4096' ['pikaci-runner']='4096')
declare -gA PIKA_ROLE_MODULES=(['managed-openclaw']='nix/incus/roles/managed-openclaw.nix' ['pi-sandbox']='nix/incus/roles/pi-sandbox.nix' ['pikaci-runner']='nix/incus/roles/pikaci-runner.nix')
declare -gA PIKA_ROLE_MOUNTS=(['managed-openclaw']='' ['pi-sandbox']='' ['pikaci-runner']='snapshot:/workspace/snapshot:ro cargo-home:/cargo-home:rw:optional cargo-target:/cargo-target:rw:optional')
declare -gA PIKA_ROLE_PACKAGE=(['managed-openclaw']='managed-openclaw-incus-image' ['pi-sandbox']='pi-sandbox-incus-image' ['pikaci-runner']='pikaci-runner-incus-image')
declare -gA PIKA_ROLE_READINESS=(['managed-openclaw']='http://127.0.0.1:18789/health' ['pi-sandbox']='ssh' ['pikaci-runner']='incus-agent')
declare -gA PIKA_ROLE_ROLES_DIGEST=(['managed-openclaw']='6fe419742bb0d641c206396c5864ff92621a171bb20710d4fc64f23a1e0098d3' ['pi-sandbox']='b4d7655c5a0c2ab4daf881d04ac49c471b1a1262bf4d8f99403479428cf2e67e' ['pikaci-runner']='293334b5c3187b996a5d806e9cbc2c866a313e4232e5fe0e6ca84a3dd209b044')
declare -gA PIKA_ROLE_RUNTIME_MODE=(['managed-openclaw']='managed-service' ['pi-sandbox']='operator-sandbox' ['pikaci-runner']='one-shot')
declare -gA PIKA_ROLE_SECURE_BOOT=(['managed-openclaw']='false' ['pi-sandbox']='false' ['pikaci-runner']='false')
declare -gA PIKA_ROLE_SERVICE_PORT=(['managed-openclaw']='18789' ['pi-sandbox']='' ['pikaci-runner']='')
declare -gA PIKA_ROLE_SPECIAL_ARGS=(['managed-openclaw']='openclawGatewayPkg pikachatPkg' ['pi-sandbox']='' ['pikaci-runner']='')
declare -gA PIKA_ROLE_SYSTEM=(['managed-openclaw']='x86_64-linux' ['pi-sandbox']='x86_64-linux' ['pikaci-runner']='x86_64-linux')
declare -gA PIKA_ROLE_USER=(['managed-openclaw']='openclaw:2000:openclaw:2000' ['pi-sandbox']='' ['pikaci-runner']='pikaci:1000:users:100')
declare -gA PIKA_ROLE_VARIANT=(['managed-openclaw']='managed-openclaw-incus-dev' ['pi-sandbox']='pi-sandbox-incus-dev' ['pikaci-runner']='pikaci-incus-dev')
