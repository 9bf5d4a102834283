"""PostgreSQL's jsonb cannot store U+0000: such a result must still complete (and not block others)."""
import asyncio


async def test_result_with_nul_completes_and_does_not_block_other_jobs(api):
    await api.create_script("u/admin/nul", 'def main():\n    return {"s": "a\\x00b", "lit": "\\\\u0000"}\n')
    await api.create_script("u/admin/ok", "def main(x: int):\n    return x\n")
    ids = [await api.run_async("u/admin/nul")] + [await api.run_async("u/admin/ok", {"x": i}) for i in range(3)]
    jobs = await asyncio.gather(*(api.wait_job(i) for i in ids))
    assert jobs[0]["success"] is True
    assert jobs[0]["result"] == {"s": "a\ufffdb", "lit": "\\u0000"}
    assert [j["result"] for j in jobs[1:]] == [0, 1, 2]


async def test_log_with_nul_is_kept_and_job_completes(api):
    await api.create_script("u/admin/nullog", 'def main():\n    print("before\\x00after", flush=True)\n    return 1\n')
    job = await api.wait_job(await api.run_async("u/admin/nullog"))
    assert job["success"] is True and job["result"] == 1
    assert "before\ufffdafter" in job["logs"]
