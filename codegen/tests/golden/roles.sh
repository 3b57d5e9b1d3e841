# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: cargo run -p pika-roles-codegen -- generate
# shellcheck shell=bash disable=SC2034,SC2016
# Sourceable role table: PIKA_ROLE_IDS lists the roles; each PIKA_ROLE_* array is keyed by role ID.
PIKA_ROLE_IDS=('alpha' 'beta')
declare -gA PIKA_ROLE_DEFAULT_ALIAS=(['alpha']='alpha/dev' ['beta']='beta/dev')
declare -gA PIKA_ROLE_PACKAGE=(['alpha']='alpha-image' ['beta']='beta-image')
declare -gA PIKA_ROLE_LEGACY_PACKAGES=(['alpha']='alpha-legacy' ['beta']='')
declare -gA PIKA_ROLE_SYSTEM=(['alpha']='x86_64-linux' ['beta']='aarch64-linux')
declare -gA PIKA_ROLE_INSTANCE_TYPE=(['alpha']='container' ['beta']='virtual-machine')
declare -gA PIKA_ROLE_IMAGE_NAME=(['alpha']='alpha-img' ['beta']='beta-img')
declare -gA PIKA_ROLE_VARIANT=(['alpha']='alpha-variant' ['beta']='beta-variant')
declare -gA PIKA_ROLE_DISK_SIZE_MIB=(['alpha']='1024' ['beta']='2048')
declare -gA PIKA_ROLE_DESCRIPTION=(['alpha']='Alpha "quoted" ${notInterpolated} it'\''s a \ backslash, ünïcödé ☃' ['beta']='Beta role')
declare -gA PIKA_ROLE_RUNTIME_MODE=(['alpha']='operator-sandbox' ['beta']='one-shot')
declare -gA PIKA_ROLE_READINESS=(['alpha']='ssh' ['beta']='/run/beta/ready')
declare -gA PIKA_ROLE_CPU=(['alpha']='1' ['beta']='4')
declare -gA PIKA_ROLE_MEMORY_MIB=(['alpha']='512' ['beta']='8192')
declare -gA PIKA_ROLE_SECURE_BOOT=(['alpha']='false' ['beta']='true')
declare -gA PIKA_ROLE_CLUSTER_GROUP=(['alpha']='' ['beta']='ci-hosts')
declare -gA PIKA_ROLE_MOUNTS=(['alpha']='' ['beta']='snapshot:/workspace/snapshot:ro cache:/var/cache/beta:rw')
declare -gA PIKA_ROLE_INSTANCE_CONFIG=(['alpha']='' ['beta']='boot.autostart=false security.nesting=true')
declare -gA PIKA_ROLE_ROLES_DIGEST=(['alpha']='81140d759864c48366abf909d920531ae99f2476f679729566923ec2121fef0b' ['beta']='bf79e55d8dd5071a008049e49691afd8fca3abf275293a6d100d731032bd20c4')
