# Sourced by the scripts in scripts/deps: `apt_install WHO PACKAGE...` installs Debian packages
# with apt-get (through sudo when not root), waiting for apt/dpkg locks other jobs hold and
# retrying a failed download, then returns; it exits 1, naming WHO, when every try failed.

# Runs a command as root: directly when root already, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

apt_install() {
    local who=$1
    shift
    echo "$who: installing $*" >&2
    local try
    for try in 1 2 3 4 5; do
        if as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
                install -y -qq --no-install-recommends "$@" >/dev/null; then
            return 0
        fi
        echo "$who: apt-get failed (try $try), retrying" >&2
        sleep 10
    done
    echo "$who: could not install $*" >&2
    exit 1
}
