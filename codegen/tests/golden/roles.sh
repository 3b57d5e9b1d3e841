# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
# roles.toml sha256: 368ab9062f643546dfa64b8f5d1832621a850dffeec08f876be97d2959e0e624
# shellcheck shell=bash disable=SC2034,SC2016
# Sourceable role table: PIKA_ROLE_IDS lists the roles; each PIKA_ROLE_<KEY> array (roles.toml key
# in upper snake case) is keyed by role ID. Lists are space separated; the user is
# name:uid:group:gid, a mount name:path:ro|rw[:optional], instance config key=value.
PIKA_ROLE_IDS=('alpha' 'beta' 'delta')
declare -gA PIKA_ROLE_CLUSTER_GROUP=(['alpha']='' ['beta']='ci-hosts' ['delta']='')
declare -gA PIKA_ROLE_CPU=(['alpha']='1' ['beta']='4' ['delta']='2')
declare -gA PIKA_ROLE_DEFAULT_ALIAS=(['alpha']='alpha/dev' ['beta']='beta/dev' ['delta']='delta/dev')
declare -gA PIKA_ROLE_DESCRIPTION=(['alpha']='Alpha "quoted" ${notInterpolated} it'\''s a \ backslash, [brackets], ünïcödé ☃' ['beta']='Beta role' ['delta']='Delta service role')
declare -gA PIKA_ROLE_DISK_SIZE_MIB=(['alpha']='1024' ['beta']='2048' ['delta']='4096')
declare -gA PIKA_ROLE_IMAGE_NAME=(['alpha']='alpha-img' ['beta']='beta-img' ['delta']='delta-img')
declare -gA PIKA_ROLE_INSTANCE_CONFIG=(['alpha']='' ['beta']='boot.autostart=false security.nesting=true' ['delta']='')
declare -gA PIKA_ROLE_INSTANCE_TYPE=(['alpha']='container' ['beta']='virtual-machine' ['delta']='virtual-machine')
declare -gA PIKA_ROLE_LEGACY_PACKAGES=(['alpha']='alpha-legacy' ['beta']='' ['delta']='')
declare -gA PIKA_ROLE_MEMORY_MIB=(['alpha']='512' ['beta']='8192' ['delta']='2048')
declare -gA PIKA_ROLE_MODULES=(['alpha']='nix/alpha.nix' ['beta']='nix/beta.nix' ['delta']='nix/alpha.nix')
declare -gA PIKA_ROLE_MOUNTS=(['alpha']='' ['beta']='snapshot:/workspace/snapshot:ro cache:/var/cache/beta:rw' ['delta']='state:/var/lib/delta:rw cargo-home:/var/cache/cargo:rw:optional')
declare -gA PIKA_ROLE_PACKAGE=(['alpha']='alpha-image' ['beta']='beta-image' ['delta']='delta-image')
declare -gA PIKA_ROLE_READINESS=(['alpha']='ssh' ['beta']='/run/beta/ready' ['delta']='http://127.0.0.1:18789/healthz')
declare -gA PIKA_ROLE_ROLES_DIGEST=(['alpha']='111f9f74a41ca8c107e96ee53658d560ada9b47db2a1d37f0832cde47f7d12f8' ['beta']='8e2d20ec01e94435d84768526d6b59f05a55d9067b797dc73c2b986b161dfe52' ['delta']='c0b2a98871f78ca76d4704b56423c4da72b7d38044ead1f57b271fc8ac998b17')
declare -gA PIKA_ROLE_RUNTIME_MODE=(['alpha']='operator-sandbox' ['beta']='one-shot' ['delta']='managed-service')
declare -gA PIKA_ROLE_SECURE_BOOT=(['alpha']='false' ['beta']='true' ['delta']='false')
declare -gA PIKA_ROLE_SERVICE_PORT=(['alpha']='' ['beta']='' ['delta']='18789')
declare -gA PIKA_ROLE_SPECIAL_ARGS=(['alpha']='alphaPkg' ['beta']='alphaPkg betaPkg' ['delta']='')
declare -gA PIKA_ROLE_SYSTEM=(['alpha']='x86_64-linux' ['beta']='aarch64-linux' ['delta']='x86_64-linux')
declare -gA PIKA_ROLE_USER=(['alpha']='' ['beta']='' ['delta']='delta:1001:users:100')
declare -gA PIKA_ROLE_VARIANT=(['alpha']='alpha-variant' ['beta']='beta-variant' ['delta']='delta-variant')
