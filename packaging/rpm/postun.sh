# extrator (rpm %postun): the queue (/var/lib/extrator) and the spool are kept on removal; delete
# them by hand if they are no longer needed.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
