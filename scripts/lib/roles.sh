# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
# shellcheck shell=bash disable=SC2034,SC2016
# Sourceable role table: PIKA_ROLE_IDS lists the roles; each PIKA_ROLE_* array is keyed by role ID.
PIKA_ROLE_IDS=('managed-openclaw' 'pi-sandbox' 'pikaci-runner')
declare -gA PIKA_ROLE_DEFAULT_ALIAS=(['managed-openclaw']='pika-agent/dev' ['pi-sandbox']='pi-sandbox/dev' ['pikaci-runner']='pikaci/dev')
declare -gA PIKA_ROLE_PACKAGE=(['managed-openclaw']='managed-openclaw-incus-image' ['pi-sandbox']='pi-sandbox-incus-image' ['pikaci-runner']='pikaci-runner-incus-image')
declare -gA PIKA_ROLE_LEGACY_PACKAGES=(['managed-openclaw']='pika-agent-incus-dev-image' ['pi-sandbox']='' ['pikaci-runner']='pikaci-incus-dev-image')
declare -gA PIKA_ROLE_SYSTEM=(['managed-openclaw']='x86_64-linux' ['pi-sandbox']='x86_64-linux' ['pikaci-runner']='x86_64-linux')
declare -gA PIKA_ROLE_INSTANCE_TYPE=(['managed-openclaw']='virtual-machine' ['pi-sandbox']='virtual-machine' ['pikaci-runner']='virtual-machine')
declare -gA PIKA_ROLE_IMAGE_NAME=(['managed-openclaw']='pika-agent-incus-dev' ['pi-sandbox']='pi-sandbox-incus-dev' ['pikaci-runner']='pikaci-incus-dev')
declare -gA PIKA_ROLE_VARIANT=(['managed-openclaw']='managed-openclaw-incus-dev' ['pi-sandbox']='pi-sandbox-incus-dev' ['pikaci-runner']='pikaci-incus-dev')
declare -gA PIKA_ROLE_DISK_SIZE_MIB=(['managed-openclaw']='8192' ['pi-sandbox']='16384' ['pikaci-runner']='12288')
declare -gA PIKA_ROLE_DESCRIPTION=(['managed-openclaw']='Pika managed OpenClaw Incus dev image' ['pi-sandbox']='Pika operator sandbox: pi and opencode over SSH' ['pikaci-runner']='Pika CI Incus dev image')
declare -gA PIKA_ROLE_RUNTIME_MODE=(['managed-openclaw']='managed-service' ['pi-sandbox']='operator-sandbox' ['pikaci-runner']='one-shot')
declare -gA PIKA_ROLE_READINESS=(['managed-openclaw']='incus-agent' ['pi-sandbox']='ssh' ['pikaci-runner']='incus-agent')
declare -gA PIKA_ROLE_CPU=(['managed-openclaw']='2' ['pi-sandbox']='2' ['pikaci-runner']='2')
declare -gA PIKA_ROLE_MEMORY_MIB=(['managed-openclaw']='4096' ['pi-sandbox']='4096' ['pikaci-runner']='4096')
declare -gA PIKA_ROLE_SECURE_BOOT=(['managed-openclaw']='false' ['pi-sandbox']='false' ['pikaci-runner']='false')
declare -gA PIKA_ROLE_CLUSTER_GROUP=(['managed-openclaw']='' ['pi-sandbox']='' ['pikaci-runner']='')
declare -gA PIKA_ROLE_MOUNTS=(['managed-openclaw']='' ['pi-sandbox']='' ['pikaci-runner']='snapshot:/workspace/snapshot:ro')
declare -gA PIKA_ROLE_INSTANCE_CONFIG=(['managed-openclaw']='' ['pi-sandbox']='' ['pikaci-runner']='')
declare -gA PIKA_ROLE_ROLES_DIGEST=(['managed-openclaw']='5d2292db142f2fb0272a43dfb7282150e6c338388edbd6d745bf773d0ebca093' ['pi-sandbox']='61975a5a452d55fef70c039f0d9a8bea5c2f298c6055bb264d9c9e5f44c16b58' ['pikaci-runner']='4d4d9bfa61bb84aca910faa745e40ab30f62d8d142b2f8e80631c75997a1a97c')
