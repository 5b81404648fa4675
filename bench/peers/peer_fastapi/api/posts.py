from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from ..deps import SessionDep
from ..models import Post
from ..schemas import PostCreate, PostPublic, PostUpdate

router = APIRouter(prefix="/posts", tags=["posts"])


@router.get("/{post_id}", response_model=PostPublic)
async def read_post(session: SessionDep, post_id: UUID):
    post = await session.get(Post, post_id)
    if post is None:
        raise HTTPException(status_code=404, detail="Post not found")
    return post


@router.get("", response_model=list[PostPublic])
async def list_posts(
    session: SessionDep,
    author: UUID,
    limit: int = Query(default=20, ge=1, le=100),
):
    stmt = (
        select(Post)
        .where(Post.author == author)
        .order_by(Post.created_at.desc())
        .limit(limit)
    )
    result = await session.scalars(stmt)
    return result.all()


@router.post("", response_model=PostPublic, status_code=status.HTTP_201_CREATED)
async def create_post(session: SessionDep, post_in: PostCreate):
    post = Post(**post_in.model_dump())
    session.add(post)
    await session.commit()
    await session.refresh(post)
    return post


@router.patch("/{post_id}", response_model=PostPublic)
async def update_post(session: SessionDep, post_id: UUID, post_in: PostUpdate):
    post = await session.get(Post, post_id)
    if post is None:
        raise HTTPException(status_code=404, detail="Post not found")
    if post.version != post_in.version:
        raise HTTPException(status_code=409, detail="Version mismatch")
    for field, value in post_in.model_dump(exclude_unset=True, exclude={"version"}).items():
        setattr(post, field, value)
    try:
        await session.commit()
    except StaleDataError:
        await session.rollback()
        raise HTTPException(status_code=409, detail="Version mismatch")
    return post
