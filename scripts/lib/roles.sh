# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
# shellcheck shell=bash disable=SC2034,SC2016
# Sourceable role table: PIKA_ROLE_IDS lists the roles; each PIKA_ROLE_* array is keyed by role ID.
PIKA_ROLE_IDS=('managed-openclaw' 'pikaci-runner')
declare -gA PIKA_ROLE_DEFAULT_ALIAS=(['managed-openclaw']='pika-agent/dev' ['pikaci-runner']='pikaci/dev')
declare -gA PIKA_ROLE_PACKAGE=(['managed-openclaw']='managed-openclaw-incus-image' ['pikaci-runner']='pikaci-runner-incus-image')
declare -gA PIKA_ROLE_LEGACY_PACKAGES=(['managed-openclaw']='pika-agent-incus-dev-image' ['pikaci-runner']='pikaci-incus-dev-image')
declare -gA PIKA_ROLE_SYSTEM=(['managed-openclaw']='x86_64-linux' ['pikaci-runner']='x86_64-linux')
declare -gA PIKA_ROLE_INSTANCE_TYPE=(['managed-openclaw']='virtual-machine' ['pikaci-runner']='virtual-machine')
declare -gA PIKA_ROLE_IMAGE_NAME=(['managed-openclaw']='pika-agent-incus-dev' ['pikaci-runner']='pikaci-incus-dev')
declare -gA PIKA_ROLE_VARIANT=(['managed-openclaw']='managed-openclaw-incus-dev' ['pikaci-runner']='pikaci-incus-dev')
declare -gA PIKA_ROLE_DISK_SIZE_MIB=(['managed-openclaw']='8192' ['pikaci-runner']='12288')
declare -gA PIKA_ROLE_DESCRIPTION=(['managed-openclaw']='Pika managed OpenClaw Incus dev image' ['pikaci-runner']='Pika CI Incus dev image')
declare -gA PIKA_ROLE_RUNTIME_MODE=(['managed-openclaw']='managed-service' ['pikaci-runner']='one-shot')
declare -gA PIKA_ROLE_READINESS=(['managed-openclaw']='incus-agent' ['pikaci-runner']='incus-agent')
declare -gA PIKA_ROLE_CPU=(['managed-openclaw']='2' ['pikaci-runner']='2')
declare -gA PIKA_ROLE_MEMORY_MIB=(['managed-openclaw']='4096' ['pikaci-runner']='4096')
declare -gA PIKA_ROLE_SECURE_BOOT=(['managed-openclaw']='false' ['pikaci-runner']='false')
declare -gA PIKA_ROLE_CLUSTER_GROUP=(['managed-openclaw']='' ['pikaci-runner']='')
declare -gA PIKA_ROLE_MOUNTS=(['managed-openclaw']='' ['pikaci-runner']='snapshot:/workspace/snapshot:ro')
declare -gA PIKA_ROLE_INSTANCE_CONFIG=(['managed-openclaw']='' ['pikaci-runner']='')
declare -gA PIKA_ROLE_ROLES_DIGEST=(['managed-openclaw']='5d2292db142f2fb0272a43dfb7282150e6c338388edbd6d745bf773d0ebca093' ['pikaci-runner']='4d4d9bfa61bb84aca910faa745e40ab30f62d8d142b2f8e80631c75997a1a97c')
