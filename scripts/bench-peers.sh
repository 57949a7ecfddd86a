# Sourced by the benchmark runners (run-bench.sh, bench-ab.sh): sets
# peer_cflags and peer_libs for the peers pkg-config knows (libuv, GLib),
# with -DAIOCTX_HAVE_LIBUV=1 / -DAIOCTX_HAVE_GLIB=1 saying which.
peer_cflags=
peer_libs=
for pc in libuv glib-2.0; do
    if pkg-config --exists "$pc" 2>/dev/null; then
        peer_cflags+=" $(pkg-config --cflags "$pc")"
        peer_libs+=" $(pkg-config --libs "$pc")"
        case $pc in
            libuv) peer_cflags+=" -DAIOCTX_HAVE_LIBUV=1" ;;
            glib-2.0) peer_cflags+=" -DAIOCTX_HAVE_GLIB=1" ;;
        esac
    else
        echo "bench: $pc not found by pkg-config; building without it" >&2
    fi
done
