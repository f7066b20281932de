/* EE_API: marks a function the eetune libraries export (shared by eetune.h, eetune_dist.h and eetune_nccl.h). */
#ifndef EETUNE_EXPORT_H
#define EETUNE_EXPORT_H

#if defined(_WIN32)
#define EE_API __declspec(dllexport)
#else
#define EE_API __attribute__((visibility("default")))
#endif

#endif /* EETUNE_EXPORT_H */
