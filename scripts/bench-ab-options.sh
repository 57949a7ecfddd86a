# Sourced by the A/B runners (bench-ab.sh, bench-ops.sh): the options they
# share. `ab_option NAME VALUE` sets the variable of a shared option
# (a_lib, a_inc, a_name, b_lib, b_inc, b_name, libs, build_dir) and
# returns 1 when NAME is not one of them:
#     if ab_option "$1" "${2-}"; then shift 2; continue; fi
ab_option() {
    case "$1" in
        --a-lib) a_lib=$2 ;;
        --a-include) a_inc=$2 ;;
        --a-name) a_name=$2 ;;
        --b-lib) b_lib=$2 ;;
        --b-include) b_inc=$2 ;;
        --b-name) b_name=$2 ;;
        --libs) libs=$2 ;;
        --build-dir) build_dir=$2 ;;
        *) return 1 ;;
    esac
}
