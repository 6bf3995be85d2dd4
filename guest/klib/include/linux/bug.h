/* See klib-shim.h. */
#include <klib-shim.h>
