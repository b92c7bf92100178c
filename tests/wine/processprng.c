/*
 * Stand-in for Windows' bcryptprimitives.dll, for the Wine test harness only (never shipped).
 *
 * Rust's std on Windows draws its random numbers (HashMap keys) from
 * bcryptprimitives!ProcessPrng, which Windows 10+ has and Wine 8 lacks, so a Rust binary
 * does not even load there. This DLL provides ProcessPrng on top of advapi32's
 * SystemFunction036 (RtlGenRandom), which Wine does have. setup.sh builds it and puts it in
 * the test prefix's system32.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
