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
declare -gA PIKA_ROLE_DESCRIPTION=(['alpha']='Alpha "quoted" ${notInterpolated} it'\''s a \ backslash' ['beta']='Beta role')
