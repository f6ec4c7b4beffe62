#ifndef SENSOR_PIPELINE_ALLOCATION_COUNTER_H
#define SENSOR_PIPELINE_ALLOCATION_COUNTER_H

#include <stdint.h>

/// Starts counting heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc) in this process.
void allocation_counter_start(void);
/// Stops counting; returns the allocations made since `allocation_counter_start`.
uint64_t allocation_counter_stop(void);
/// The heap bytes in use now (glibc's `mallinfo2().uordblks`).
uint64_t allocation_counter_heap_bytes_in_use(void);

#endif
