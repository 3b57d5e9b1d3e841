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
