# extrator (rpm %preun): stop the service on removal ($1 = 0), not on upgrade.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now extrator.service >/dev/null 2>&1 || :
fi
